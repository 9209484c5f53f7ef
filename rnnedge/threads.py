"""The default thread count of every command that computes (`--threads`), torch- and ORT-free.

On a small machine shared with other jobs, every extra spinning thread costs more than it brings:
on the 2-core box issue 20 was measured on, `OMP_NUM_THREADS=1` made `rnnedge eval` 4-6x faster and
one torch thread trains several times faster than two. The default is therefore half the CPUs this
process may run on, at least 1 and at most 4; `--threads N` overrides it everywhere.
"""

from __future__ import annotations

import os

from rnnedge.errors import ConfigError

MAX_DEFAULT = 4


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, e.g. a container's share), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_threads() -> int:
    """min(4, half the usable CPUs), at least 1: 1 on a 2-core machine, 4 on 8 cores or more."""
    return max(1, min(MAX_DEFAULT, usable_cpus() // 2))


def max_threads() -> int:
    """The most `--threads` accepted: 4 per CPU of the machine, at least 8 (more only thrashes)."""
    return max(8, 4 * (os.cpu_count() or 1))


def resolve_threads(threads: int | None) -> int:
    """`--threads` as given (a positive integer, at most max_threads()), or the default when None;
    ConfigError otherwise."""
    if threads is None:
        return default_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"--threads must be a positive integer, got {threads!r}")
    if threads > max_threads():
        raise ConfigError(
            f"--threads {threads} is far more than this machine's {os.cpu_count()} CPUs (at most {max_threads()})"
        )
    return threads


THREADS_HELP = "CPU threads (ONNX Runtime intra-op, and torch where used). Default: min(4, half the CPUs)."
