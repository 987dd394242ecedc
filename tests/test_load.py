"""The Jobs tab's live monitor under load: 20 sessions watching a training job (a short bench/load_watch.py).

The test asserts behaviour only: every call of every session succeeds while the job trains. How
fast the calls are (p95 latency, calls per second) is a figure of the bench (`make bench`), which
depends on the machine and on whatever else runs on it.
"""

from __future__ import annotations

from bench.load_watch import TARGET, measure

CLIENTS = 20
SECONDS = 8  # 20 sessions ticking once a second: some 160 calls


def test_twenty_sessions_watch_a_training_job_without_errors(tmp_path):
    result = measure(tmp_path / "studio", CLIENTS, SECONDS, baseline_s=None)["load"]
    assert result["errors"] == TARGET["errors"], result["first_errors"]
    # Proof that the sessions watched, not a rate: each session's first counted tick is due within
    # the first second of the window, so a server that answers at all gets at least one per session.
    assert result["calls"] >= CLIENTS, result
