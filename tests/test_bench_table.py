"""bench/run_all.py's table: every bench in results.json has rows, and verdicts follow the targets."""

from __future__ import annotations

import json
import sys

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import run_all  # noqa: E402


def test_every_bench_script_has_rows_and_a_recorded_result():
    results = json.loads((ROOT / "bench" / "results.json").read_text(encoding="utf-8"))
    assert set(run_all.bench_scripts()) == set(run_all.TABLE) == set(results["benches"])
    assert {"cpu", "cores"} <= set(results["machine"]) and "paddleformers" in results["versions"]


def test_verdicts_follow_the_target_direction():
    row = run_all.table_rows("moe_dispatch", {"moe_step_s": 0.3, "dense_step_s": 0.28, "moe_over_dense": 1.07,
                                              "target": 1.5, "naive_step_s": 2.0, "naive_over_moe": 6.7})
    assert row[0][-2:] == ["ratio ≤ 1.5", "pass"] and row[1][-1] == "—"
    slow = run_all.table_rows("moe_dispatch", {"moe_over_dense": 1.7, "target": 1.5})
    assert slow[0][-1] == "FAIL"
    load = run_all.table_rows("load_watch", {"p95_ms": 620.0, "target": {"p95_ms": 500, "errors": 0}, "errors": 0})
    assert load[0][-1] == "FAIL" and load[2][-1] == "pass"
    assert run_all.table_rows("ui_startup", {"error": "exit status 1"})[0][-1] == "FAIL"
