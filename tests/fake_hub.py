"""A Hugging Face hub on 127.0.0.1 serving one repository from a folder, for the hub-download tests.

It answers what huggingface_hub 1.33's snapshot_download asks, read from its source
(hf_api.model_info / list_repo_tree, file_download.get_hf_file_metadata / http_get):
  GET  /api/models/{repo}[/revision/{rev}][?blobs=True] -> {"id", "sha", "siblings": [{"rfilename", "size"}]}
  GET  /api/models/{repo}/tree/{commit}?recursive=...  -> [{"type": "file", "path", "size", "oid"}]
  HEAD /{repo}/resolve/{commit}/{file}                 -> ETag, X-Repo-Commit, Content-Length
  GET  /{repo}/resolve/{commit}/{file}                 -> the bytes; 206 with Content-Range for a Range
An unknown repo gets 404 with X-Error-Code: RepoNotFound, as the hub answers. Every request is
logged; a file can be made to break off once after some bytes (`drop_once`) or to stop after some
bytes until released (`stall_once`), and files are sent at `bytes_per_s` at most.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"
_CHUNK = 32 * 1024


@dataclass
class Request:
    method: str
    path: str
    range: str | None


@dataclass
class FakeHub:
    repo_id: str
    files: dict[str, bytes]
    bytes_per_s: float = 0.0
    requests: list[Request] = field(default_factory=list)
    drop_once: dict[str, int] = field(default_factory=dict)
    stall_once: dict[str, int] = field(default_factory=dict)
    stalled: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def from_folder(cls, repo_id: str, folder: Path, **kwargs) -> "FakeHub":
        files = {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        return cls(repo_id, files, **kwargs)

    def start(self) -> str:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                hub.handle(self, body=False)

            def do_GET(self):
                hub.handle(self, body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def gets(self, name: str) -> list[Request]:
        """The GET requests for file `name`'s bytes."""
        return [r for r in self.requests if r.method == "GET" and r.path.endswith(f"/resolve/{COMMIT}/{name}")]

    # -- answers ---------------------------------------------------------------------------------

    def _json(self, handler: BaseHTTPRequestHandler, status: int, value, headers: dict | None = None) -> None:
        data = json.dumps(value).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for key, val in (headers or {}).items():
            handler.send_header(key, val)
        handler.end_headers()
        handler.wfile.write(data)

    def handle(self, handler: BaseHTTPRequestHandler, body: bool) -> None:
        path = unquote(urlsplit(handler.path).path)
        self.requests.append(Request(handler.command, path, handler.headers.get("Range")))
        repo = re.escape(self.repo_id)
        if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)(/revision/[^/]+)?", path):
            if m.group(1) != self.repo_id:
                return self._json(handler, 404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
            siblings = [{"rfilename": n, "size": len(d), "blobId": hashlib.sha1(d).hexdigest()}
                        for n, d in self.files.items()]
            return self._json(handler, 200, {"id": self.repo_id, "sha": COMMIT, "siblings": siblings})
        if re.fullmatch(rf"/api/models/{repo}/tree/{COMMIT}", path):
            return self._json(handler, 200, [{"type": "file", "path": n, "size": len(d),
                                              "oid": hashlib.sha1(d).hexdigest()} for n, d in self.files.items()])
        m = re.fullmatch(rf"/{repo}/resolve/{COMMIT}/(.+)", path)
        if not m or m.group(1) not in self.files:
            return self._json(handler, 404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
        self._send_file(handler, m.group(1), body)

    def _send_file(self, handler: BaseHTTPRequestHandler, name: str, body: bool) -> None:
        data = self.files[name]
        start = 0
        wanted = handler.headers.get("Range")
        if wanted and (m := re.fullmatch(r"bytes=(\d+)-", wanted)):
            start = int(m.group(1))
        handler.send_response(206 if start else 200)
        handler.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        handler.send_header("X-Repo-Commit", COMMIT)
        handler.send_header("Accept-Ranges", "bytes")
        handler.send_header("Content-Length", str(len(data) - start))
        if start:
            handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        handler.end_headers()
        if not body:
            return
        cut = self.drop_once.pop(name, None)
        stall = self.stall_once.pop(name, None)
        end = len(data) if cut is None and stall is None else start + (cut if cut is not None else stall)
        for offset in range(start, end, _CHUNK):
            handler.wfile.write(data[offset:min(offset + _CHUNK, end)])
            if self.bytes_per_s:
                time.sleep(_CHUNK / self.bytes_per_s)
        if stall is not None:
            handler.wfile.flush()
            self.stalled.set()
            self.release.wait(60)
        handler.close_connection = True
