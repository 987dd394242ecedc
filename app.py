"""`python app.py`: serve ERNIE Studio in the browser.

    python app.py [--host 127.0.0.1] [--port 7860] [--workdir DIR] [--auth-file FILE]
                  [--max-upload-mb N] [--max-jobs-per-device N] [--insecure-no-auth]

Binding an address other than loopback needs --auth-file (lines of `user:password`), unless
--insecure-no-auth says the network is trusted. This process never imports paddle: training,
token counting and export run as `python -m trainer ...` subprocesses and chat models in
`python -m models.serve` processes (ended with the app); jobs keep running when it stops; started again on the same workdir, it picks up running and queued jobs.
"""

from __future__ import annotations

import argparse
import hmac
import os
import signal
import stat
import sys
import tempfile
from pathlib import Path

from plumbing.network import is_loopback

DEFAULT_PORT = 7860


class AuthFileError(Exception):
    pass


def read_auth_file(path: str) -> list[tuple[str, str]]:
    """`user:password` per line; blank lines and lines starting with # are ignored."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        mode = os.stat(path).st_mode
    except OSError as e:
        raise AuthFileError(f"--auth-file {path}: cannot read it ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise AuthFileError(f"--auth-file {path}: not UTF-8 text") from None
    users = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, password = line.partition(":")
        if not sep or not user.strip() or not password:
            raise AuthFileError(f"--auth-file {path}:{number}: expected user:password")
        users.append((user.strip(), password))
    if not users:
        raise AuthFileError(f"--auth-file {path}: no user:password line")
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        print(f"warning: {path} is readable by other users; chmod 600 it", file=sys.stderr)
    return users


def make_auth(users: list[tuple[str, str]]):
    table = dict(users)

    def check(user: str, password: str) -> bool:
        expected = table.get(user)
        # compare_digest on every attempt, so timing does not tell which user names exist
        return hmac.compare_digest((expected or "\0").encode(), (password or "").encode()) and expected is not None

    return check


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python app.py", description="Serve ERNIE Studio in the browser.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument("--workdir", help="studio directory: jobs, datasets, models, studio.db "
                                          "(default $ERNIE_STUDIO_HOME or ./workspace)")
    parser.add_argument("--auth-file", help="file of user:password lines; required for a non-loopback --host")
    parser.add_argument("--insecure-no-auth", action="store_true",
                        help="serve a non-loopback --host without authentication (trusted networks only)")
    parser.add_argument("--max-upload-mb", type=float, default=1024, help="largest file an upload may be (MB)")
    parser.add_argument("--max-jobs-per-device", type=int, default=1,
                        help="jobs that may run at once on one device; the rest wait in the queue")
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536:
        parser.error(f"--port must be 1-65535, got {args.port}")
    if args.max_upload_mb <= 0:
        parser.error(f"--max-upload-mb must be positive, got {args.max_upload_mb:g}")
    if args.max_jobs_per_device < 1:
        parser.error(f"--max-jobs-per-device must be at least 1, got {args.max_jobs_per_device}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    auth = None
    if args.auth_file:
        try:
            auth = make_auth(read_auth_file(args.auth_file))
        except AuthFileError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    elif not is_loopback(args.host) and not args.insecure_no_auth:
        print(f"error: --host {args.host} is reachable from other machines; give --auth-file FILE "
              f"(user:password lines), or --insecure-no-auth on a trusted network", file=sys.stderr)
        return 2

    workdir = Path(args.workdir or os.environ.get("ERNIE_STUDIO_HOME") or "workspace").expanduser().resolve()
    # Trainer subprocesses and the model registry find the workdir through this variable.
    os.environ["ERNIE_STUDIO_HOME"] = str(workdir)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    # Uploads land under the workdir (Gradio's own spool and cache included), never in a shared /tmp.
    uploads = workdir / "tmp" / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(uploads)
    tempfile.tempdir = str(uploads)

    from webui.app import CSS, build_app
    from webui.context import make_context

    ctx = make_context(workdir, max_upload_mb=args.max_upload_mb, max_jobs_per_device=args.max_jobs_per_device)
    demo = build_app(ctx)
    ctx.scheduler.start()
    print(f"ERNIE Studio: workdir {workdir}", flush=True)
    demo.queue(default_concurrency_limit=8)
    # SIGTERM ends the app through the finally below, so the chat model servers it started end too
    # (jobs are detached and keep running).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        # No run history: Gradio would keep the inputs and outputs of the last 100 events (the whole
        # form each time, megabytes) in the browser's localStorage and write all of it again on every
        # event, seconds of the page's time per form change once the history has filled.
        demo.launch(server_name=args.host, server_port=args.port, auth=auth, max_file_size=ctx.max_upload_bytes,
                    css=CSS, ssr_mode=False, allowed_paths=[str(workdir / "configs")], show_error=True,
                    footer_links=["api", "gradio", "settings"], run_history=False)
    finally:
        ctx.scheduler.stop()
        ctx.models.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
