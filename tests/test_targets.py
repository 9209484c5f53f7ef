"""rnnedge.targets: the registry, what each target says about itself, and --provider routing (no emulator needed)."""

from __future__ import annotations

import pytest

from rnnedge.errors import ConfigError, DependencyError, RnnedgeError
from rnnedge.inference import ProviderChoice, resolve_providers
from rnnedge.inference.providers import PROVIDER_NAMES, emulated_target
from rnnedge.targets import (
    EMULATED,
    TARGET_NAMES,
    all_targets,
    check_target_name,
    cpu_arm64,
    cpu_x86_avx2,
    target_spec,
    where,
    where_line,
)
from rnnedge.targets.isa import x86_int8_path, x86_isa
from rnnedge.targets.spec import Availability, TargetSpec


def test_every_registered_target_imports_and_answers_the_five_questions() -> None:
    specs = all_targets()
    assert [s.name for s in specs] == list(TARGET_NAMES)
    assert {"cpu-x86", "cpu-x86-avx2", "cpu-arm64", "mobile", "cuda", "tensorrt"} <= set(TARGET_NAMES)
    for s in specs:
        assert isinstance(s, TargetSpec) and s.runs in ("host", "emulated", "static")
        got = s.probe()
        assert isinstance(got, Availability) and got.reason  # a reason either way, never a bare False
        assert s.int8_path() and set(s.recipes) and s.reference
        assert s.facts()["target"] == s.name
    assert {s.name for s in specs if s.runs == "emulated"} == set(EMULATED)
    assert all(target_spec(n).open is not None for n in EMULATED)
    assert target_spec("mobile").folder == "mobile" and target_spec("mobile").export is not None
    assert "int8-dynamic" not in target_spec("tensorrt").recipes  # no DynamicQuantizeLinear in TensorRT


def test_names_aliases_and_unknown_targets() -> None:
    assert check_target_name("cpu") == "cpu-x86"
    with pytest.raises(ConfigError, match=r"unknown target 'riscv'.*cpu-arm64"):
        check_target_name("riscv")
    with pytest.raises(RnnedgeError, match=r"unknown provider 'arm'; choose one of .*cpu-arm64"):
        ProviderChoice("arm")
    assert set(EMULATED) <= set(PROVIDER_NAMES)
    with pytest.raises(RnnedgeError, match="--tf32 applies"):
        ProviderChoice("cpu-arm64", tf32=True)
    assert not ProviderChoice("cpu-arm64").on_gpu and ProviderChoice("cuda").on_gpu
    assert emulated_target("cpu") is None and emulated_target(["CPUExecutionProvider"]) is None


def test_int8_paths_follow_the_cpu_flags() -> None:
    assert "saturating int16" in x86_int8_path(frozenset({"avx2", "fma"}))
    assert "VNNI" in x86_int8_path(frozenset({"avx2", "avx512f", "avx512_vnni"}))
    assert "VNNI" in x86_int8_path(frozenset({"avx2", "avx_vnni"}))  # Alder Lake and later: AVX-VNNI, no AVX-512
    assert "AMX" in x86_int8_path(frozenset({"avx2", "avx512_vnni", "amx_int8"}))
    assert x86_isa(frozenset({"avx2", "sse4_1", "avx512_vnni"})) == ["avx2", "avx512_vnni"]
    assert "saturating int16" in target_spec("cpu-x86-avx2").int8_path()
    assert "exact" in target_spec("cpu-arm64").int8_path()


def test_where_names_the_cpu_and_its_int8_path() -> None:
    host = where("cpu")
    assert host["target"] == "cpu-x86" and host["int8_path"] and host["emulated"] is False
    assert where(ProviderChoice("cpu-arm64"))["target"] == "cpu-arm64"
    line = where_line("cpu-x86-avx2")
    assert line.startswith("ran on cpu-x86-avx2: qemu Haswell-noTSX") and "int8: AVX2" in line


def test_an_emulated_target_that_cannot_run_says_why_in_one_line(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr("shutil.which", lambda _name: None)  # no qemu on PATH
    with pytest.raises(DependencyError, match="cpu-arm64 cannot run here: qemu-aarch64-static is not installed"):
        resolve_providers("cpu-arm64")
    assert not cpu_x86_avx2.SPEC.probe().ok and "apt-get install qemu-user-static" in cpu_x86_avx2.SPEC.probe().reason
    monkeypatch.undo()
    monkeypatch.setenv("RNNEDGE_CACHE", str(tmp_path))  # qemu may be there, but no sysroot in this cache
    if cpu_arm64.qemu_binary("aarch64"):
        why = cpu_arm64.SPEC.probe()
        assert not why.ok and "rnnedge targets setup cpu-arm64" in why.reason
