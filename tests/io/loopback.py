"""Servers on 127.0.0.1 for the download tests: a plain file server and a small model hub that speaks
the part of the Hugging Face Hub's HTTP API that ``huggingface_hub.snapshot_download`` uses.

The hub part (read off huggingface_hub 2.x's source, file_download.py, hf_api.py, _snapshot_download.py):

- ``GET /api/models/{repo}/revision/{rev}``: ``{"id", "sha", "siblings"}``; an unknown repository is a 404
  with ``X-Error-Code: RepoNotFound``, an unknown revision a 404 with ``X-Error-Code: RevisionNotFound``;
- ``GET /api/models/{repo}/tree/{commit}``: the files, ``{"type": "file", "path", "size", "oid", "lfs"}``
  (model.zip as an LFS file whose ``oid`` is its sha256, as on the hub);
- ``HEAD`` / ``GET /{repo}/resolve/{rev}/{file}``: ``X-Repo-Commit``, ``ETag`` (and ``X-Linked-Etag`` /
  ``X-Linked-Size`` for LFS files: the sha256 and the size), ``Content-Length``, then the body.

Every request is counted in ``server.hits``, so a test can show that a cached model needs none.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


@dataclass
class HubRepo:
    """One model repository: its files and its revisions (branch or tag -> commit)."""

    files: dict[str, bytes]
    commit: str = "0123456789abcdef0123456789abcdef01234567"
    refs: dict[str, str] = field(default_factory=dict)
    served: dict[str, bytes] = field(default_factory=dict)  # bytes sent instead of a file's (a corruption)

    def resolve(self, revision: str) -> str | None:
        if revision == self.commit:
            return self.commit
        return {"main": self.commit, **self.refs}.get(revision)


@dataclass
class Content:
    """What the server serves: plain files by path, hub repositories by ``owner/name``."""

    files: dict[str, bytes] = field(default_factory=dict)
    repos: dict[str, HubRepo] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)


def _git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    content: Content

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str], head: bool = False) -> None:
        self.send_response(status)
        for key, value in {"Content-Length": str(len(body)), **headers}.items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, status: int, data: object, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(data).encode()
        self._send(status, body, {"Content-Type": "application/json", **(headers or {})})

    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_GET(self) -> None:
        self._route(head=False)

    def _route(self, head: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        self.content.hits.append(f"{self.command} {path}")
        if path.lstrip("/") in self.content.files:
            self._send(200, self.content.files[path.lstrip("/")], {}, head)
        elif path.startswith("/api/models/"):
            self._api(path.removeprefix("/api/models/"))
        elif "/resolve/" in path:
            self._resolve(path.lstrip("/"), head)
        else:
            self._send(404, b"not found", {}, head)

    def _repo(self, repo_id: str, revision: str) -> tuple[HubRepo, str] | None:
        repo = self.content.repos.get(repo_id)
        if repo is None:
            self._json(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
            return None
        commit = repo.resolve(revision)
        if commit is None:
            self._json(404, {"error": "Invalid rev id"}, {"X-Error-Code": "RevisionNotFound"})
            return None
        return repo, commit

    def _api(self, rest: str) -> None:
        owner, name, kind, *revision = rest.split("/")
        found = self._repo(f"{owner}/{name}", "/".join(revision) or "main")
        if found is None:
            return
        repo, commit = found
        if kind == "revision":
            siblings = [{"rfilename": f} for f in repo.files]
            self._json(200, {"id": f"{owner}/{name}", "sha": commit, "siblings": siblings})
        elif kind == "tree":
            self._json(200, [_tree_entry(path, data) for path, data in repo.files.items()])
        else:
            self._json(404, {"error": f"no {kind} endpoint here"})

    def _resolve(self, path: str, head: bool) -> None:
        repo_id, _, rest = path.partition("/resolve/")
        revision, _, filename = rest.partition("/")
        found = self._repo(repo_id, revision)
        if found is None:
            return
        repo, commit = found
        if filename not in repo.files:
            self._json(
                404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit}
            )
            return
        data = repo.files[filename]
        headers = {"X-Repo-Commit": commit, "ETag": f'"{_git_blob_id(data)}"'}
        if filename.endswith(".zip"):  # an LFS file: the linked etag is the content's sha256
            headers["X-Linked-Etag"] = f'"{hashlib.sha256(data).hexdigest()}"'
            headers["X-Linked-Size"] = str(len(data))
        self._send(200, repo.served.get(filename, data), headers, head)


def _tree_entry(path: str, data: bytes) -> dict[str, object]:
    entry: dict[str, object] = {"type": "file", "path": path, "size": len(data), "oid": _git_blob_id(data)}
    if path.endswith(".zip"):
        entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
    return entry


@contextmanager
def serve(content: Content) -> Iterator[str]:
    """Serve ``content`` on 127.0.0.1 (a free port) for the block; yields ``http://127.0.0.1:PORT``."""
    handler = type("Handler", (_Handler,), {"content": content})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def folder_files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by its relative path (a hub folder written by export-model --hub)."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }
