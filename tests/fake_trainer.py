"""A stand-in trainer for the launcher's unit tests: speaks the job file protocol, trains nothing.

Run as `python -m tests.fake_trainer run CONFIG --job-dir DIR [--resume]` (the real trainer's argv).
Its behaviour comes from the `fake:` section of the config:
  steps (20), step_s (0.02), checkpoint_every (0 = only on stop), hang (false: after `running`,
  sleep until killed or stopped), ignore_stop (false: ignore SIGTERM and the STOP file),
  spawn_child (false: start a child process
  that ignores SIGTERM; its pid goes to DIR/child.pid), child_session (false: put that child in a
  session of its own, as paddle.distributed.launch does with ranks), exit_code (None: exit with this
  code right after `running` without writing a final state).
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time

import yaml

from trainer import jobfiles
from trainer.jobfiles import JobPaths, checkpoint_step

_stop = False
_ignore_stop = False


def _on_sigterm(_signum, _frame) -> None:
    global _stop
    _stop = True


def _save_checkpoint(paths: JobPaths, step: int) -> None:
    ckpt = paths.checkpoint_dir(step)
    ckpt.mkdir(parents=True, exist_ok=True)
    (ckpt / "state.json").write_text(json.dumps({"step": step}))
    jobfiles.mark_checkpoint_complete(ckpt)


def _should_stop(paths: JobPaths) -> bool:
    return not _ignore_stop and (_stop or jobfiles.stop_requested(paths.dir))


def _stop_now(paths: JobPaths, step: int) -> int:
    _save_checkpoint(paths, step)
    print(f"fake trainer: stopped at step {step}", flush=True)
    jobfiles.write_status(paths.dir, state=jobfiles.STOPPED, step=step, ended=time.time())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fake_trainer")
    parser.add_argument("command", choices=["run"])
    parser.add_argument("config")
    parser.add_argument("--job-dir", required=True)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)

    with open(args.config, encoding="utf-8") as f:
        opts = (yaml.safe_load(f) or {}).get("fake", {})
    global _ignore_stop
    _ignore_stop = bool(opts.get("ignore_stop"))
    signal.signal(signal.SIGTERM, signal.SIG_IGN if _ignore_stop else _on_sigterm)
    paths = JobPaths(args.job_dir)
    steps = int(opts.get("steps", 20))
    step_s = float(opts.get("step_s", 0.02))
    every = int(opts.get("checkpoint_every", 0))

    step = 0
    if args.resume:
        last = paths.last_checkpoint()
        step = checkpoint_step(last) if last else 0
    if _should_stop(paths):
        return _stop_now(paths, step)

    if opts.get("spawn_child"):
        child = subprocess.Popen(
            [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"],
            start_new_session=bool(opts.get("child_session")),
        )
        (paths.dir / "child.pid").write_text(str(child.pid))

    jobfiles.write_status(paths.dir, state=jobfiles.RUNNING, started=time.time(), step=step, total_steps=steps)
    print(f"fake trainer: running from step {step} of {steps}", flush=True)
    if opts.get("exit_code") is not None:
        print("fake trainer: crashing on purpose", flush=True)
        return int(opts["exit_code"])
    if opts.get("hang"):
        while True:
            time.sleep(0.05)
            if _should_stop(paths):
                return _stop_now(paths, step)

    start = time.time()
    while step < steps:
        time.sleep(step_s)
        step += 1
        jobfiles.append_metrics(paths.dir, {"step": step, "loss": 1.0 / step, "lr": 1e-3,
                                            "elapsed_s": time.time() - start})
        jobfiles.write_status(paths.dir, step=step)
        print(f"fake trainer: step {step} loss {1.0 / step:.4f}", flush=True)
        if _should_stop(paths):
            return _stop_now(paths, step)
        if every and step % every == 0:
            _save_checkpoint(paths, step)
    paths.output.mkdir(exist_ok=True)
    (paths.output / "model.txt").write_text("fake model\n")
    jobfiles.write_status(paths.dir, state=jobfiles.COMPLETED, step=step, ended=time.time())
    print("fake trainer: completed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
