"""The mixer registry (torch-free): one line per mixer. Adding a mixer = one file + one line here.

Each listed module defines `SPEC: MixerSpec` (see spec.py). Names are available without importing
torch (CLI help, config validation); `mixer_spec(name)` imports the module on first use.
"""

from __future__ import annotations

import importlib
from functools import cache

from rnnedge.errors import ConfigError
from rnnedge.models.spec import MixerSpec

MIXER_MODULES: dict[str, str] = {
    "mingru": "rnnedge.models.mingru",
    "minlstm": "rnnedge.models.minlstm",
    "gru": "rnnedge.models.gru",
    "lstm": "rnnedge.models.lstm",
    "elman": "rnnedge.models.elman",
    "transformer": "rnnedge.models.transformer",
    "aaren": "rnnedge.models.aaren",
}
MIXER_NAMES: tuple[str, ...] = tuple(MIXER_MODULES)


def check_mixer_name(name: str) -> str:
    if name not in MIXER_MODULES:
        raise ConfigError(f"unknown arch {name!r}; choose one of {', '.join(MIXER_NAMES)}")
    return name


@cache
def mixer_spec(name: str) -> MixerSpec:
    """The MixerSpec of a registered mixer (imports its module, and so torch)."""
    module = importlib.import_module(MIXER_MODULES[check_mixer_name(name)])
    spec = getattr(module, "SPEC", None)
    if not isinstance(spec, MixerSpec) or spec.name != name:
        raise ConfigError(f"{MIXER_MODULES[name]} does not define SPEC = MixerSpec(name={name!r}, ...)")
    return spec
