"""Models from the hubs: which model names are hub repo ids, where a download goes in the workdir,
what state it is in, and the download itself through each hub's own client library (Hugging Face
with `huggingface_hub`, AI Studio with `aistudio_sdk`, ModelScope with `modelscope`: the hubs
paddleformers downloads from, chosen the same way, DOWNLOAD_SOURCE, else Hugging Face).

A repo id is downloaded only on request (`python -m trainer model download`, the Train tab's
Download button), never while a run resolves its model. It goes to WORKDIR/models/<owner>/<name>/,
in the hub's own layout; beside the files, `.download/state.json` says how far the download got
(written twice a second while it runs, `done` only once every listed file is there with its listed
size). A directory with config.json and no state file (a checkpoint copied there by hand) counts
as downloaded too.

Resuming: files already complete are never fetched again (the clients check them against the
commit), and a connection that drops mid-file is picked up with a range request by the client. A
file whose download process was killed starts again on the next run: huggingface_hub 1.33 writes
each download to a temporary file of its own process and never reuses it (those leftovers are
deleted when the next run starts).

Never imports paddle; the client libraries are imported only by the download itself.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TextIO

from models.checkpoints import ModelNotFound, read_model_config
from plumbing.files import atomic_write_json
from plumbing.locking import exclusive

HUBS = {"huggingface": "Hugging Face", "aistudio": "AI Studio", "modelscope": "ModelScope"}
HUB_ENV = "DOWNLOAD_SOURCE"  # paddleformers' choice of hub, honoured here too
# How long the first request to a hub may take before the download gives up: a machine without
# network fails within this, instead of after the clients' minutes of retries.
PROBE_TIMEOUT_S = 10.0
STATE_DIR = ".download"
DOWNLOADING, DONE, FAILED = "downloading", "done", "failed"

_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}")
# Where the clients keep a file while it arrives: Hugging Face and ModelScope name it *.incomplete,
# AI Studio puts it in a `._tmp` folder of the target.
_IN_FLIGHT_SUFFIX = ".incomplete"
_IN_FLIGHT_DIR = "._tmp"
_TICK_S = 0.5


class HubError(Exception):
    """A download that could not be done, and what to do about it."""


def is_repo_id(name: str | None) -> bool:
    """`owner/name` as the hubs spell repositories, and not a path that exists here."""
    name = (name or "").strip()
    return bool(_REPO_ID.fullmatch(name)) and ".." not in name and not Path(name).exists()


def default_hub() -> str:
    chosen = os.environ.get(HUB_ENV, "").strip().lower()
    return chosen if chosen in HUBS else "huggingface"


def model_dir(workdir: str | os.PathLike[str], repo_id: str) -> Path:
    owner, name = repo_id.strip().split("/")
    return Path(workdir) / "models" / owner / name


def state_file(workdir: str | os.PathLike[str], repo_id: str) -> Path:
    return model_dir(workdir, repo_id) / STATE_DIR / "state.json"


def log_file(workdir: str | os.PathLike[str], repo_id: str) -> Path:
    """Where the studio writes the output of a download it started."""
    return model_dir(workdir, repo_id) / STATE_DIR / "download.log"


def read_state(workdir: str | os.PathLike[str], repo_id: str) -> dict:
    """The download's state.json; {} when none was started (or it cannot be read)."""
    try:
        state = json.loads(state_file(workdir, repo_id).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def downloaded_dir(workdir: str | os.PathLike[str], repo_id: str) -> Path | None:
    """The checkpoint directory of a complete download of `repo_id`, else None."""
    target = model_dir(workdir, repo_id)
    if not (target / "config.json").is_file():
        return None
    state = read_state(workdir, repo_id)
    return target if not state or state.get("state") == DONE else None


def downloaded_models(workdir: str | os.PathLike[str]) -> list[str]:
    """The repo ids downloaded into `workdir`, sorted."""
    models = Path(workdir) / "models"
    found = []
    for config in models.glob("*/*/config.json"):
        repo_id = f"{config.parent.parent.name}/{config.parent.name}"
        if _REPO_ID.fullmatch(repo_id) and downloaded_dir(workdir, repo_id):
            found.append(repo_id)
    return sorted(found)


def command_line(repo_id: str, hub: str | None = None) -> str:
    """The command that downloads `repo_id`, as messages quote it."""
    return f"python -m trainer model download {repo_id}" + (f" --hub {hub}" if hub and hub != default_hub() else "")


def not_downloaded(name: str | None, workdir: str | os.PathLike[str]) -> str | None:
    """Why a model name that is a repo id cannot be used yet; None for other names and for a
    complete download."""
    if not is_repo_id(name) or downloaded_dir(workdir, name.strip()):
        return None
    repo_id = name.strip()
    state = read_state(workdir, repo_id)
    where, command = model_dir(workdir, repo_id), command_line(repo_id, state.get("hub"))
    if state.get("state") == DOWNLOADING:
        return (f"{repo_id} is being downloaded ({_percent(state)}) into {where}, or its download was "
                f"interrupted; wait for it, or press Download again (or run `{command}`) to continue")
    if state.get("state") == FAILED:
        return (f"the download of {repo_id} did not finish ({state.get('error') or 'no reason recorded'}); "
                f"press Download next to the model field in the Train tab or run `{command}` to continue")
    return (f"{repo_id} is a hub model that is not downloaded yet: press Download next to the model field in "
            f"the Train tab, or run `{command}` (it goes to {where}); if you meant a local directory, "
            f"it does not exist")


def require_downloaded(repo_id: str, workdir: str | os.PathLike[str]) -> Path:
    """The checkpoint directory of a downloaded repo id; ModelNotFound says what to do if there is none."""
    found = downloaded_dir(workdir, repo_id)
    if found is None:
        raise ModelNotFound(not_downloaded(repo_id, workdir))
    return found


def _percent(state: dict) -> str:
    total = state.get("bytes_total") or 0
    return f"{100 * min(state.get('bytes_done') or 0, total) / total:.0f}%" if total else "size unknown"


def _mb(n: float) -> str:
    return f"{n / 2**20:,.1f} MB"


# -- the hubs ------------------------------------------------------------------------------------

@dataclass
class Listing:
    """What a hub says a repo holds: the files (size in bytes, None where the hub does not say) at
    `revision`, a commit where the hub names one."""
    endpoint: str
    revision: str | None
    files: dict[str, int | None]


def _unreachable(hub: str, endpoint: str, exc: BaseException) -> HubError:
    hint = {"huggingface": "set HF_ENDPOINT to a Hugging Face mirror you can reach (e.g. https://hf-mirror.com)",
            "modelscope": "set MODELSCOPE_DOMAIN to a ModelScope site you can reach",
            "aistudio": "set STUDIO_GIT_HOST to an AI Studio git host you can reach"}[hub]
    reason = str(exc).strip() or type(exc).__name__
    return HubError(f"cannot reach {HUBS[hub]} at {endpoint} ({reason[:200]}). Check the network (and "
                    f"HTTPS_PROXY), {hint}, or try another hub with --hub; or copy the checkpoint (config.json, "
                    f"weights, tokenizer files) into a local directory and give that directory as the model")


def _probe(hub: str, endpoint: str) -> None:
    """Fail within PROBE_TIMEOUT_S when the hub cannot be reached; any HTTP answer will do."""
    import httpx

    try:
        httpx.head(endpoint, timeout=PROBE_TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise _unreachable(hub, endpoint, exc) from None


def _hf_endpoint() -> str:
    from huggingface_hub import constants

    # read now, not when huggingface_hub was imported (it may have been imported before HF_ENDPOINT was set)
    return (os.environ.get("HF_ENDPOINT", "").strip() or constants.ENDPOINT).rstrip("/")


def _hf_listing(repo_id: str, revision: str | None) -> Listing:
    import httpx
    from huggingface_hub import HfApi
    from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, OfflineModeIsEnabled,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    endpoint = _hf_endpoint()
    try:
        info = HfApi(endpoint=endpoint).model_info(repo_id, revision=revision, files_metadata=True,
                                                   timeout=PROBE_TIMEOUT_S)
    except (httpx.TransportError, OfflineModeIsEnabled) as exc:
        raise _unreachable("huggingface", endpoint, exc) from None
    except GatedRepoError:
        raise HubError(f"{repo_id} on Hugging Face is gated: accept its licence on its page at {endpoint}, then "
                       f"set HF_TOKEN (or run `hf auth login`)") from None
    except RepositoryNotFoundError:
        raise HubError(f"{repo_id} was not found on Hugging Face ({endpoint}): check the name; a private "
                       f"repository needs HF_TOKEN") from None
    except RevisionNotFoundError:
        raise HubError(f"{repo_id} on Hugging Face ({endpoint}) has no revision {revision!r}") from None
    except HfHubHTTPError as exc:
        raise HubError(f"Hugging Face ({endpoint}) refused to describe {repo_id}: {str(exc)[:300]}") from None
    files = {sibling.rfilename: sibling.size for sibling in info.siblings or []}
    return Listing(endpoint, info.sha or revision, files)


def _hf_fetch(repo_id: str, listing: Listing, target: Path) -> None:
    import httpx
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()  # the studio reports progress itself, on the terminal and in the UI
    for leftover in (target / ".cache" / "huggingface" / "download").rglob("*" + _IN_FLIGHT_SUFFIX):
        leftover.unlink(missing_ok=True)  # an earlier process's own temporary file: never reused
    try:
        snapshot_download(repo_id, revision=listing.revision, local_dir=target, endpoint=listing.endpoint)
    except httpx.TransportError as exc:
        raise HubError(f"the connection to {listing.endpoint} was lost ({exc}); run the download again to "
                       f"continue: finished files are kept") from None
    except HfHubHTTPError as exc:
        raise HubError(f"Hugging Face ({listing.endpoint}) refused a file of {repo_id}: {str(exc)[:300]}") from None
    except OSError:
        raise  # disk full, a size that does not match: said as it is by the caller
    except Exception as exc:  # the client's other errors (a file it cannot locate, a bad answer) carry its message
        raise HubError(f"Hugging Face ({listing.endpoint}): {type(exc).__name__}: {str(exc)[:300]}; run the "
                       f"download again to continue") from None


def _modelscope_endpoint() -> str:
    from modelscope.hub.utils.utils import resolve_endpoint

    # MODELSCOPE_DOMAIN is a host name to the client (https:// is put before it); with a scheme it
    # names a mirror served over plain http too. The endpoint is passed on to every call.
    return resolve_endpoint(os.environ.get("MODELSCOPE_DOMAIN")).rstrip("/")


def _modelscope_listing(repo_id: str, revision: str | None) -> Listing:
    endpoint = _modelscope_endpoint()
    _probe("modelscope", endpoint)
    from modelscope.hub.api import HubApi

    try:
        entries = HubApi(endpoint=endpoint, timeout=int(PROBE_TIMEOUT_S), max_retries=1).get_model_files(
            repo_id, revision=revision, recursive=True)
    except Exception as exc:  # the client's own errors: not found, denied, a bad answer
        raise HubError(f"ModelScope ({endpoint}) could not list {repo_id}: {str(exc)[:300]}") from None
    return Listing(endpoint, revision, {entry["Path"]: entry.get("Size") for entry in entries})


def _modelscope_fetch(repo_id: str, listing: Listing, target: Path) -> None:
    from modelscope.hub.snapshot_download import snapshot_download

    try:
        snapshot_download(model_id=repo_id, revision=listing.revision, local_dir=str(target),
                          endpoint=listing.endpoint)
    except Exception as exc:  # the client's own errors carry its message
        raise HubError(f"ModelScope ({listing.endpoint}): {str(exc)[:300]}; run the download again to "
                       f"continue") from None


def _aistudio_endpoint() -> str:
    from aistudio_sdk.config import STUDIO_GIT_HOST_DEFAULT

    return (os.environ.get("STUDIO_GIT_HOST", "").strip() or STUDIO_GIT_HOST_DEFAULT).rstrip("/")


def _aistudio_listing(repo_id: str, revision: str | None) -> Listing:
    endpoint = _aistudio_endpoint()
    _probe("aistudio", endpoint)
    from aistudio_sdk.config import DEFAULT_MODEL_REVISION
    from aistudio_sdk.snapshot_download import get_model_files

    revision = revision or DEFAULT_MODEL_REVISION
    try:
        entries, _ = get_model_files(repo_id, revision)
    except Exception as exc:  # the client's own errors: not found, denied, a bad answer
        raise HubError(f"AI Studio ({endpoint}) could not list {repo_id} at {revision}: {str(exc)[:300]}") from None
    return Listing(endpoint, revision, {e["path"]: e.get("size") for e in entries if e.get("type", "blob") == "blob"})


def _aistudio_fetch(repo_id: str, listing: Listing, target: Path) -> None:
    from aistudio_sdk.snapshot_download import snapshot_download

    try:
        snapshot_download(repo_id=repo_id, revision=listing.revision, local_dir=str(target))
    except Exception as exc:  # the client's own errors carry its message
        raise HubError(f"AI Studio ({listing.endpoint}): {str(exc)[:300]}; run the download again to "
                       f"continue") from None


_CLIENTS: dict[str, tuple[Callable[[str, str | None], Listing], Callable[[str, Listing, Path], None]]] = {
    "huggingface": (_hf_listing, _hf_fetch),
    "modelscope": (_modelscope_listing, _modelscope_fetch),
    "aistudio": (_aistudio_listing, _aistudio_fetch),
}


# -- progress --------------------------------------------------------------------------------------

def _complete(path: Path, size: int | None) -> bool:
    try:
        return path.is_file() and (size is None or path.stat().st_size == size)
    except OSError:
        return False


def _in_flight_bytes(target: Path) -> int:
    total = 0
    for path in [*target.rglob("*" + _IN_FLIGHT_SUFFIX), *(target / _IN_FLIGHT_DIR).rglob("*")]:
        try:
            total += path.stat().st_size if path.is_file() else 0
        except OSError:
            pass  # renamed into place between the listing and the stat
    return total


Echo = Callable[..., None]  # echo(line, live=False): live lines are the progress line, rewritten in place


class Progress:
    """Measures a download from what is on disk (so every client is measured alike), writes it into
    state.json every _TICK_S and hands `echo` a live line about once a second."""

    def __init__(self, path: Path, target: Path, base: dict, echo: Echo | None):
        self.path, self.target, self.echo = path, target, echo
        self.state = {**base, "state": DOWNLOADING, "bytes_done": 0, "bytes_total": None, "files_done": 0,
                      "files_total": None, "bytes_per_s": 0.0, "error": "", "updated": time.time()}
        self.files: dict[str, int | None] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._samples: list[tuple[float, int]] = []
        # re-entrant: a signal handler may close while the main thread is inside write()
        self._lock = threading.RLock()
        self._closed = False

    def write(self, **fields) -> None:
        with self._lock:
            if not self._closed:
                self.state.update(fields, updated=time.time())
                atomic_write_json(self.path, self.state)

    def close(self, **fields) -> None:
        """The last write: the watcher stops, and nothing it measures afterwards is written."""
        self._stop.set()
        with self._lock:
            self.write(**fields, finished=time.time())
            self._closed = True

    def expect(self, files: dict[str, int | None]) -> None:
        self.files = files
        known = [size for size in files.values() if size is not None]
        self.write(files_total=len(files), bytes_total=sum(known) if known else None)

    def measure(self) -> None:
        done = [name for name, size in self.files.items() if _complete(self.target / name, size)]
        finished = sum(self.files[name] or (self.target / name).stat().st_size for name in done)
        now, got = time.monotonic(), finished + _in_flight_bytes(self.target)
        total = self.state["bytes_total"]
        got = min(got, total) if total else got
        self._samples = [s for s in self._samples if now - s[0] <= 5.0] + [(now, got)]
        first = self._samples[0]
        speed = (got - first[1]) / (now - first[0]) if now > first[0] else 0.0
        self.write(files_done=len(done), bytes_done=got, bytes_per_s=max(speed, 0.0))

    def line(self) -> str:
        s = self.state
        total = s["bytes_total"]
        share = f"{100 * s['bytes_done'] / total:5.1f}%  " if total else ""
        size = f"{_mb(s['bytes_done'])} / {_mb(total)}" if total else _mb(s["bytes_done"])
        return (f"[download] {share}{size}  {s['files_done']}/{s['files_total']} files  "
                f"{_mb(s['bytes_per_s'])}/s")

    def _run(self) -> None:
        last_echo = 0.0
        while not self._stop.wait(_TICK_S):
            self.measure()
            if self.echo and time.monotonic() - last_echo >= 1.0:
                last_echo = time.monotonic()
                self.echo(self.line(), live=True)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True, name="download-progress")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()


# -- the download ----------------------------------------------------------------------------------

def _stop_on_signals(progress: Progress) -> None:
    """SIGTERM (the UI's Stop) and Ctrl-C end the download at once, recorded as stopped: the
    clients' worker threads would otherwise finish every file under way first."""
    def stop(signum, _frame):
        progress.close(state=FAILED, error=f"stopped ({signal.Signals(signum).name})")
        print("\n[download] stopped; run the same command again to continue", file=sys.stderr, flush=True)
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def download(repo_id: str, workdir: str | os.PathLike[str], hub: str | None = None, revision: str | None = None,
             echo: Echo | None = None, handle_signals: bool = False) -> Path:
    """Download `repo_id` from `hub` (default_hub()) into model_dir(); returns that directory.

    Raises HubError with what to do when the hub cannot be reached, does not know the repo, or the
    download breaks off (what arrived is kept for the next run). `echo` gets progress lines;
    `handle_signals` (the command line) makes SIGTERM and SIGINT stop at once."""
    import psutil

    repo_id = (repo_id or "").strip()
    hub = hub or default_hub()
    if not _REPO_ID.fullmatch(repo_id) or ".." in repo_id:
        raise HubError(f"{repo_id!r} is not a hub repo id: expected owner/name, e.g. baidu/ERNIE-4.5-0.3B-Paddle")
    if hub not in HUBS:
        raise HubError(f"unknown hub {hub!r}; expected one of {', '.join(HUBS)}")
    target = model_dir(workdir, repo_id)
    (target / STATE_DIR).mkdir(parents=True, exist_ok=True)
    me = psutil.Process()
    base = {"repo_id": repo_id, "hub": hub, "revision": revision, "path": str(target), "pid": me.pid,
            "create_time": me.create_time(), "started": time.time()}
    try:
        with exclusive(target / STATE_DIR / "lock", wait=False):
            return _download_locked(repo_id, Path(workdir), hub, revision, base, echo, handle_signals)
    except BlockingIOError:
        raise HubError(f"{repo_id} is already being downloaded into {target} (pid "
                       f"{read_state(workdir, repo_id).get('pid', '?')}); wait for it to finish") from None


def _download_locked(repo_id: str, workdir: Path, hub: str, revision: str | None, base: dict,
                     echo: Echo | None, handle_signals: bool) -> Path:
    target = model_dir(workdir, repo_id)
    before = read_state(workdir, repo_id)
    had = downloaded_dir(workdir, repo_id)
    listing_of, fetch = _CLIENTS[hub]
    progress = Progress(state_file(workdir, repo_id), target, base, echo)
    progress.write()
    if handle_signals:
        _stop_on_signals(progress)
    if echo:
        echo(f"[download] {repo_id} from {HUBS[hub]} into {target}")
    try:
        listing = listing_of(repo_id, revision)
    except HubError as exc:
        if had is not None:
            # already complete: an unreachable hub only means no update could be looked for
            if before:
                atomic_write_json(progress.path, before)
            else:
                progress.path.unlink(missing_ok=True)
            if echo:
                echo(f"[download] could not look for updates, keeping the complete download: {exc}")
            return had
        progress.close(state=FAILED, error=str(exc))
        raise
    progress.write(endpoint=listing.endpoint, commit=listing.revision)
    progress.expect(listing.files)
    if echo:
        echo(f"[download] {len(listing.files)} files, "
             f"{_mb(progress.state['bytes_total'] or 0)} at {listing.endpoint} (revision {listing.revision})")
    progress.start()
    try:
        fetch(repo_id, listing, target)
        progress.stop()
        progress.measure()
        missing = [name for name, size in listing.files.items() if not _complete(target / name, size)]
        if missing:
            raise HubError(f"the download of {repo_id} is incomplete: {', '.join(missing[:5])} missing or of the "
                           f"wrong size; run it again to continue")
        if not (target / "config.json").is_file():
            raise HubError(f"{repo_id} has no config.json: it is not a model checkpoint")
    except HubError as exc:
        progress.close(state=FAILED, error=str(exc))
        raise
    except OSError as exc:  # disk full, a file the client found inconsistent
        progress.close(state=FAILED, error=str(exc))
        raise HubError(f"{exc}; run the download again to continue") from None
    progress.close(state=DONE)
    if echo:
        echo(progress.line(), live=True)
        try:
            read_model_config(target)
        except ModelNotFound as exc:
            echo(f"[download] note: {exc}")
    return target


def command(repo_id: str, workdir: str | os.PathLike[str], hub: str | None = None, revision: str | None = None,
            out: TextIO | None = None) -> int:
    """`python -m trainer model download`: progress on `out`, the directory as the last line; 0 or 1."""
    out = out or sys.stdout
    tty = out.isatty()

    live_shown = False

    def echo(line: str, live: bool = False) -> None:
        # on a terminal the progress line rewrites itself; in a log each one is a line of its own
        nonlocal live_shown
        if tty and live:
            out.write("\r" + line.ljust(100))
        else:
            out.write(("\n" if live_shown else "") + line + "\n")
        live_shown = tty and live
        out.flush()

    started = time.monotonic()
    try:
        path = download(repo_id, workdir, hub, revision, echo=echo, handle_signals=True)
    except HubError as exc:
        print(("\n" if live_shown else "") + f"download failed: {exc}", file=sys.stderr, flush=True)
        return 1
    echo(f"[download] finished in {time.monotonic() - started:.1f} s")
    out.write(f"{path}\n")
    out.flush()
    return 0
