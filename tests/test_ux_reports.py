"""Issue 20 item 4 and the report layout: every loss figure says which text and slice it is on, in its
own row; the drift summary is two tables that fit a 1280 px page; the pipeline names its model."""

from __future__ import annotations

import re

import pytest

from rnnedge.drift import run_drift, summarize, verdict, write_report
from rnnedge.drift.pages import CSS, summary_tables
from tests.test_drift_helpers import TEXT, dynamic_int8, step_graph

SETTINGS = {"data": "heldout.txt (sampled from the fp32 model)", "steps": 100, "streams": 3}


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory):
    d = step_graph(tmp_path_factory.mktemp("ux_reports") / "a", layers=2, seed=1)
    dynamic_int8(d)
    return run_drift(d, TEXT, steps=100, streams=3, gen_steps=20)


def test_every_loss_row_says_what_it_is_on(result, tmp_path):
    report = write_report([result], tmp_path / "r", SETTINGS)
    (head, rows), (state_head, _) = summary_tables(report)
    on = rows[0][head.index("scored on")]
    assert on == "3 streams × 100 steps = 300 chars of heldout.txt (sampled from the fp32 model)", on
    assert "baseline nats/char" in head and "baseline nats/char" not in state_head
    html = (tmp_path / "r" / "report.html").read_text()
    assert html.count("<table>") == 2 and "scored on" in html and "sampled from the fp32 model" in html
    md = (tmp_path / "r" / "report.md").read_text()
    assert "| 3 streams × 100 steps = 300 chars of heldout.txt" in md
    assert "on the drift streams: 3 streams × 100 steps = 300 chars" in verdict(summarize(result))


def test_the_tables_fit_a_1280px_page(result, tmp_path):
    report = write_report([result], tmp_path / "r", SETTINGS)
    width = int(re.search(r"body\{[^}]*max-width:(\d+)px", CSS).group(1))
    assert width <= 1280
    for head, rows in summary_tables(report):
        # ~7.5 px per character at 13 px plus 14 px of padding per cell: the widest cell of each column
        widths = [
            max(len(h.split()[0]) if " " in h else len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)
        ]
        estimate = sum(min(w, 24) * 7.5 + 16 for w in widths)  # the 'scored on' cell wraps at 22em
        assert estimate <= width, (head, estimate)


def test_pipeline_summary_rows_say_which_text():
    from rnnedge._cli.pipeline import format_summary

    summary = {
        "files": {},
        "variant": "int8-dynamic",
        "heldout_text": {"source": "sampled from the fp32 model (offline fallback)", "chars": 1000},
        "loss_nats": {
            "step": {
                "loss_fp32": 1.4273,
                "loss_variant": 1.43,
                "loss_delta": 0.0027,
                "size_fp32": 4,
                "size_variant": 1,
                "scored_on": "the whole held-out text: 1,000 chars",
            },
        },
        "drift_nll_nats": {
            "baseline": 1.4286,
            "variant": 1.43,
            "steps": 100,
            "scored_on": "the drift streams: 8 x 100 steps of the held-out text",
        },
        "step_us_per_token_p50": {"fp32": 100.0, "int8-dynamic": 80.0},
        "drift_verdict": "x",
        "stage_seconds": {"export": 1.0},
    }
    text = format_summary(summary)
    assert "1.4273  int8-dynamic 1.4300  delta +0.0027 nats/char on the whole held-out text: 1,000 chars" in text
    assert "drift loss             fp32 1.4286" in text and "on the drift streams: 8 x 100 steps" in text


def test_pipeline_names_the_model_by_arch_and_size(tmp_path):
    from rnnedge.pipeline.run import model_name
    from tests.test_quantize_support import make_export

    d = make_export(tmp_path / "export", "gru", d_model=16, n_layers=1, train_steps=1)
    assert model_name(d) == "gru 1x16"
