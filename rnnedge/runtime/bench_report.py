"""What `rnnedge bench` derives from its measurements (ratios) and the table it prints."""

from __future__ import annotations

from typing import Any

from rnnedge.graphmeta import FP32


def ratios(result: dict[str, Any]) -> dict[str, float]:
    """Each variant's p50 per call over the shape and peak floors, over fp32, and torch's over it."""
    out: dict[str, float] = {}
    floor = result["floor"]
    fp32 = result["step"].get(FP32, {})
    torch_res = result.get("torch") or {}
    for variant, per_batch in result["step"].items():
        for bkey, entry in per_batch.items():  # "batch1", ...
            p50 = entry["per_call_us"]["p50"]
            if floor.get("available") and bkey in floor:
                out[f"{variant}_{bkey}_over_shape_floor"] = p50 / floor[bkey]["shape_floor_us"]
                out[f"{variant}_{bkey}_over_peak_floor"] = p50 / floor[bkey]["peak_floor_us"]
            if variant != FP32 and bkey in fp32:
                out[f"{variant}_over_fp32_{bkey}"] = p50 / fp32[bkey]["per_call_us"]["p50"]
            t_step = torch_res.get("step", {}).get(bkey)
            if t_step:
                out[f"speedup_{variant}_vs_torch_{bkey}"] = t_step["p50"] / p50
    for variant, per_len in result["parallel"].items():
        for tkey, entry in per_len.items():  # "T512", ...
            t_par = torch_res.get("parallel", {}).get(tkey)
            if t_par:
                out[f"parallel_{variant}_{tkey}_speedup_vs_torch"] = entry["tokens_per_s"] / t_par["tokens_per_s"]
    return out


def _floor_lines(floor: dict[str, Any]) -> list[str]:
    if not floor.get("available"):
        return [str(floor.get("note", "floor not available"))]
    return [
        f"floor: {floor['flops_per_token'] / 1e6:.2f} MFLOP/token in {len(floor['matmuls'])} weight products; "
        f"numpy peak {floor['peak_gflops']:.1f} GFLOP/s (512^3 GEMM)"
    ]


def _memory_lines(result: dict[str, Any], label_width: int) -> list[str]:
    """Process RSS before each timed session, what making it and running its steps added, and the peak."""
    rows = [(f"{v} {b}", e["memory"]) for v, per in result["step"].items() for b, e in per.items() if "memory" in e]
    if not rows:
        return []
    if not all(m.get("available") for _, m in rows):
        return ["", f"memory: {next(m['note'] for _, m in rows if not m.get('available'))}"]
    mib = 2**20
    lines = [
        "",
        f"{'process RSS, MiB':<{label_width}}{'before':>9}{'+session':>10}{'+steps':>9}{'peak':>9}",
    ]
    for label, m in rows:
        lines.append(
            f"{label:<{label_width}}{m['rss_before'] / mib:>9.1f}{m['made_bytes'] / mib:>+10.2f}"
            f"{m['used_bytes'] / mib:>+9.2f}{m['peak'] / mib:>9.1f}"
        )
    return lines


def format_table(result: dict[str, Any]) -> str:
    """The readable summary `rnnedge bench` prints."""
    floor = result["floor"]
    torch_res = result.get("torch") or {}
    variants = result["variants"]
    labels = [f"{v} {key}" for section in ("step", "parallel") for v, rows in result[section].items() for key in rows]
    label_width = max([18, *(len(label) + 2 for label in labels)])
    lines = [
        f"rnnedge bench  {result['export']}  arch={result['arch']}  threads={result['threads']}  "
        f"{result['providers'][0]}  onnxruntime {result['onnxruntime']}",
        *_floor_lines(floor),
        "state per stream: " + ", ".join(f"{v} {i['state_bytes_per_stream']:,} bytes" for v, i in variants.items()),
        "",
        f"{'step graph':<{label_width}}{'p50 µs/call':>12}{'p99 µs/call':>12}{'p50 µs/tok':>11}"
        f"{'shape floor':>12}{'x floor':>8}{'peak floor':>11}{'torch p50':>11}{'speed-up':>9}",
    ]
    for variant, per_batch in result["step"].items():
        for bkey, entry in per_batch.items():
            p50 = entry["per_call_us"]["p50"]
            f = floor.get(bkey) if floor.get("available") else None
            floor_cell = (
                f"{f['shape_floor_us']:>12.1f}{p50 / f['shape_floor_us']:>7.2f}x{f['peak_floor_us']:>11.1f}"
                if f
                else f"{'-':>12}{'-':>8}{'-':>11}"
            )
            t_step = torch_res.get("step", {}).get(bkey)
            torch_cell = f"{t_step['p50']:>11.1f}{t_step['p50'] / p50:>8.1f}x" if t_step else f"{'-':>11}{'-':>9}"
            lines.append(
                f"{variant + ' ' + bkey:<{label_width}}{p50:>12.1f}{entry['per_call_us']['p99']:>12.1f}"
                f"{entry['per_token_us']['p50']:>11.1f}{floor_cell}{torch_cell}"
            )
    lines += _memory_lines(result, label_width)
    if result["parallel"]:
        lines += [
            "",
            f"{'parallel graph':<{label_width}}{'tokens/s':>12}{'torch tok/s':>12}{'speed-up':>9}{'peak MiB':>10}",
        ]
        for variant, per_len in result["parallel"].items():
            for tkey, entry in per_len.items():
                t_par = torch_res.get("parallel", {}).get(tkey)
                cell = (
                    f"{t_par['tokens_per_s']:>12.0f}{entry['tokens_per_s'] / t_par['tokens_per_s']:>8.2f}x"
                    if t_par
                    else f"{'-':>12}{'-':>9}"
                )
                mem = entry.get("memory", {})
                peak = f"{mem['peak'] / 2**20:>10.1f}" if mem.get("available") else f"{'-':>10}"
                lines.append(f"{variant + ' ' + tkey:<{label_width}}{entry['tokens_per_s']:>12.0f}{cell}{peak}")
    for variant, per_batch in result["step"].items():
        for bkey in per_batch:
            r = result["ratios"].get(f"{variant}_over_fp32_{bkey}")
            if r is not None:
                lines.append(f"{variant} / fp32 step time at {bkey.replace('batch', 'batch ')}: {r:.2f}")
    if torch_res.get("skipped"):
        lines.append(f"PyTorch baseline skipped: {torch_res['skipped']}")
    if "long_stream" in result:
        ls = result["long_stream"]
        lines.append(
            f"long stream: {ls['tokens']} tokens, logits finite={ls['all_logits_finite']}, "
            f"states finite={ls['all_states_finite']}, max |state|={ls['max_abs_state']:.3f} "
            f"(checked every {ls['checked_every']} tokens and at the last)"
        )
    return "\n".join(lines)
