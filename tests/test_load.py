"""The Jobs tab's live monitor under load: 20 sessions watching a training job (a short bench/load_watch.py)."""

from __future__ import annotations

from bench.load_watch import TARGET, measure

CLIENTS = 20
SECONDS = 15


def test_twenty_sessions_watch_a_training_job_without_errors_and_fast(tmp_path):
    result = measure(tmp_path / "studio", CLIENTS, SECONDS, baseline_s=None)["load"]
    assert result["errors"] == TARGET["errors"], result["first_errors"]
    # every session kept its once-a-second tick (a slow server would leave ticks out)
    assert result["calls"] >= 0.9 * CLIENTS * SECONDS, result
    # On 2 cores with the job training and nothing else running, p95 is about 80-110 ms; other heavy
    # processes on the machine (a parallel test run) can push it past the target.
    assert result["p95_ms"] < TARGET["p95_ms"], result
