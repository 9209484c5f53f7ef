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


class WriteError(RnnedgeError):
    """A file could not be written (full disk, no permission); the file it was to replace is unchanged.

    `reason` is the operating system's word for it (e.g. "No space left on device")."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class DependencyError(RnnedgeError):
    """An optional dependency (tensorrt, an execution provider, torch) is not available."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) during work that knows what it kept: the message says what and how to go on.

    A KeyboardInterrupt, so everything that cleans up on Ctrl-C still does; the CLI prints the message."""


class ExportChanged(UserWarning):
    """A graph in an export folder no longer has the bytes rnnedge wrote (its ledger's / manifest's sha256):
    something rewrote it after the export, e.g. a converter run in place (onnx2tf runs `onnxsim IN IN`).
    The CLI prints it as one `rnnedge: warning:` line; the file is still loaded."""
