from __future__ import annotations

import pytest
import torch

from rnnedge.models import MIXER_NAMES, ModelConfig, build_model

ARCHS = MIXER_NAMES  # every registered mixer: a new mixer is tested by registering it
TEXT = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
    "First Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\nResolved. resolved.\n"
) * 20


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--kill-sweep",
        choices=("sampled", "full"),
        default="sampled",
        help="tests/faults/test_killpoints.py: SIGKILL each command around its commit (sampled, the default) "
        "or at every rename/unlink/unlinkat/write it makes (full)",
    )


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tiny models: a second (spinning) torch thread only slows tests on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def text() -> str:
    return TEXT


def tiny_model(arch: str, vocab_size: int = 20, n_layers: int = 2, d_model: int = 16, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(ModelConfig(vocab_size=vocab_size, arch=arch, n_layers=n_layers, d_model=d_model)).eval()
