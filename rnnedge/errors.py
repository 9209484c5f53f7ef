"""Domain errors. The CLI turns each into one line on stderr and exit code 1."""


class RnnedgeError(Exception):
    """Base class for every error a user can cause (bad files, bad text, bad options)."""


class UnknownCharacterError(RnnedgeError):
    """Text holds characters that are not in the model's vocabulary."""


class CheckpointError(RnnedgeError):
    """A checkpoint folder is missing, corrupt, truncated or does not match its config."""


class ConfigError(RnnedgeError):
    """A model or run configuration is invalid."""


class GraphError(RnnedgeError):
    """An ONNX file is missing, corrupt, of the wrong kind or lacks rnnedge metadata."""


class VerificationError(RnnedgeError):
    """A numerical check failed; the message lists every check with its measured figure."""


class InputError(RnnedgeError):
    """Inputs of the wrong shape, dtype or range were passed to a session."""


class DependencyError(RnnedgeError):
    """An optional dependency (tensorrt, an execution provider, torch) is not available."""
