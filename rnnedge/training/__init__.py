"""Torch training: data, the train loop, checkpoints, evaluation."""
