"""A small in-process stand-in for the Hugging Face Hub HTTP API, for offline tests.

Only the stdlib is used (``http.server.ThreadingHTTPServer`` in a daemon thread), so the module
can be imported before ``huggingface_hub`` / ``datasets``, which matters because both read
``HF_ENDPOINT`` (and ``HF_HUB_DISABLE_XET``) once, at import time.

Usage::

    from fakehub import FakeHub

    with FakeHub(token="hf_test") as hub:          # free port picked automatically
        api = HfApi(endpoint=hub.endpoint, token="hf_test")
        api.create_repo("tester/out", repo_type="dataset", private=True)
        api.upload_file(path_or_fileobj=b"{}\\n", path_in_repo="a.jsonl",
                        repo_id="tester/out", repo_type="dataset")
        assert hub.files("tester/out")["a.jsonl"] == b"{}\\n"

Clients must use the classic LFS protocol, not Xet: set ``HF_HUB_DISABLE_XET=1`` before
``huggingface_hub`` is imported (or set ``huggingface_hub.constants.HF_HUB_DISABLE_XET = True``),
otherwise ``upload_file`` of binary files goes straight to Xet and fails. ``hub.client_env()``
returns a complete environment for a subprocess, and ``hub.run_python()`` runs code in one.

What is emulated (as observed from huggingface_hub 2.4 / datasets 5.2):

* ``POST /api/repos/create`` (409 if it exists), ``DELETE /api/repos/delete``,
  ``PUT /api/{type}s/{repo}/settings`` (private / visibility).
* ``GET /api/whoami-v2``, ``POST /api/validate-yaml``.
* ``GET /api/{type}s/{repo}`` and ``.../revision/{rev}`` (repo info with ``sha``, ``siblings``,
  ``cardData``), ``.../tree/{rev}[/{path}]`` (``recursive``, ``expand``), ``POST .../paths-info/{rev}``,
  ``.../commits/{rev}``, ``.../refs``, ``POST|DELETE .../branch/{name}``, ``POST .../super-squash/{branch}``.
* Uploads: ``POST .../preupload/{rev}`` (``lfs`` for binary samples, paths matching the repo's
  ``.gitattributes`` LFS patterns, or files >= ``lfs_threshold``; ``regular`` otherwise),
  ``POST /{prefix}{repo}.git/info/lfs/objects/batch`` (basic transfer; href is a one-shot upload
  URL on this server), ``PUT`` of the raw bytes (sha256 and size must match what the batch
  announced), ``POST .../commit/{branch}`` (NDJSON: header, file, lfsFile, deletedFile, deletedFolder).
* Downloads: ``HEAD``/``GET /{prefix}{repo}/resolve/{rev}/{path}`` served directly (no CDN redirect)
  with ``X-Repo-Commit``, ``ETag`` (git oid, or sha256 for LFS files), ``Accept-Ranges`` and
  single ``Range`` requests (206 / 416).

Checks performed like the Hub: ``Authorization: Bearer <token>`` is required for every write and
for reading private repos (missing -> 401, unknown token -> 401 with
``X-Error-Message: Invalid credentials in Authorization header``), unknown repos -> 404
``X-Error-Code: RepoNotFound``, unknown revisions -> 404 ``RevisionNotFound``, missing paths -> 404
``EntryNotFound``, ``parentCommit`` not matching the branch head -> 412, malformed NDJSON -> 400,
LFS pointers to objects never uploaded -> 400, binary content sent as a regular file -> 400.

Simplifications: repo ids must be ``namespace/name``; any valid token may read/write any repo
(no per-namespace permissions); no pull requests (``create_pr`` -> 400); no pagination; every
new repo starts with an "initial commit" holding the Hub's default ``.gitattributes``.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import itertools
import json
import os
import re
import secrets
import subprocess
import sys
import threading
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["FakeHub", "Commit", "LoggedRequest", "DEFAULT_GITATTRIBUTES"]

REPO_TYPES = ("model", "dataset", "space")
_PLURAL_TO_TYPE = {"models": "model", "datasets": "dataset", "spaces": "space"}
_URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}

# The .gitattributes the Hub writes into every new repo (LFS part).
DEFAULT_GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
    for pattern in (
        "*.7z *.arrow *.bin *.bz2 *.ckpt *.ftz *.gz *.h5 *.joblib *.lfs.* *.lz4 *.mds *.mlmodel"
        " *.model *.msgpack *.npy *.npz *.onnx *.ot *.parquet *.pb *.pickle *.pkl *.pt *.pth *.rar"
        " *.safetensors saved_model/**/* *.tar.* *.tar *.tflite *.tgz *.wasm *.xz *.zip *.zst"
        " *tfevents* *.pcm *.sam *.raw *.aac *.flac *.mp3 *.ogg *.wav *.bmp *.gif *.png *.tiff"
        " *.jpg *.jpeg *.webp *.mp4 *.webm"
    ).split()
)

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_API_REPO_RE = re.compile(r"^/api/(models|datasets|spaces)/([^/]+)/([^/]+)(?:/(.*))?$")
_LFS_BATCH_RE = re.compile(r"^/(?:(datasets|spaces)/)?([^/]+)/([^/]+?)\.git/info/lfs/objects/batch$")
_RESOLVE_RE = re.compile(r"^/(?:(datasets|spaces)/)?([^/]+)/([^/]+)/resolve/([^/]+)/(.+)$")
_LFS_PUT_RE = re.compile(r"^/__fakehub/lfs/([0-9a-f]+)$")


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


class HubError(Exception):
    """Raised inside handlers; turned into a Hub-like JSON error response."""

    def __init__(self, status: int, message: str, code: str | None = None, extra: dict | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.extra = extra or {}  # merged into the JSON body
        self.headers = headers or {}


class LoggedRequest(NamedTuple):
    method: str
    path: str  # URL path, still percent-encoded, without the query string
    status: int


@dataclass(frozen=True)
class _StoredFile:
    content: bytes
    lfs: bool
    sha256: str
    last_commit: str  # oid of the commit that last changed this path

    @property
    def size(self) -> int:
        return len(self.content)

    @property
    def git_oid(self) -> str:
        if self.lfs:
            return _git_blob_oid(_lfs_pointer(self.sha256, self.size))
        return _git_blob_oid(self.content)

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.git_oid


@dataclass
class Commit:
    """One commit as stored by the fake hub (``hub.commits()`` returns these, oldest first)."""

    oid: str
    message: str  # the summary line
    description: str
    parent: str | None
    date: str
    author: str
    _files: dict[str, _StoredFile] = field(repr=False)

    @property
    def files(self) -> dict[str, bytes]:
        """Full snapshot of the repo at this commit: path -> content."""
        return {p: f.content for p, f in sorted(self._files.items())}

    @property
    def lfs_paths(self) -> set[str]:
        return {p for p, f in self._files.items() if f.lfs}


@dataclass
class _Repo:
    repo_type: str
    repo_id: str
    private: bool
    created_at: str
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    lfs: dict[str, bytes] = field(default_factory=dict)  # sha256 -> content

    @property
    def url_path(self) -> str:
        return _URL_PREFIX[self.repo_type] + self.repo_id


@dataclass
class _FailureRule:
    remaining: int
    status: int
    path_contains: str
    method: str | None
    message: str
    headers: dict


class FakeHub:
    """Fake Hugging Face Hub server. See the module docstring for what it emulates.

    Args:
        token: the token accepted as ``Authorization: Bearer <token>`` (user ``username``).
            More tokens can be added with :meth:`add_token`.
        username: name returned by ``/api/whoami-v2`` and used as namespace when ``create_repo``
            gets no organization.
        host, port: where to listen; ``port=0`` (default) picks a free port.
        lfs_threshold: files at least this big are answered ``lfs`` by preupload.
    """

    def __init__(
        self,
        token: str = "hf_test",
        *,
        username: str = "tester",
        host: str = "127.0.0.1",
        port: int = 0,
        lfs_threshold: int = 10 * 1024 * 1024,
    ):
        self.token = token
        self.username = username
        self.host = host
        self.lfs_threshold = lfs_threshold
        self._requested_port = port
        self._tokens: dict[str, str] = {token: username} if token else {}
        self._lock = threading.RLock()
        self._repos: dict[tuple[str, str], _Repo] = {}
        self._pending_uploads: dict[str, tuple[tuple[str, str], str, int]] = {}
        self._requests: list[LoggedRequest] = []
        self._request_log: list[dict] = []
        self._failures: list[_FailureRule] = []
        self._server_errors: list[str] = []
        self._counter = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "FakeHub":
        if self._server is not None:
            return self
        hub = self

        class Handler(_Handler):
            fakehub = hub

        server = ThreadingHTTPServer((self.host, self._requested_port), Handler)
        server.daemon_threads = True
        server.block_on_close = False
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fakehub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> "FakeHub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeHub is not started")
        return self._server.server_address[1]

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:<port>`` -- use as ``HF_ENDPOINT`` or ``HfApi(endpoint=...)``."""
        return f"http://{self.host}:{self.port}"

    # ------------------------------------------------------------------ test helpers
    def add_token(self, token: str, username: str | None = None) -> None:
        """Accept another token (for ``username``, default: the hub's user)."""
        with self._lock:
            self._tokens[token] = username or self.username

    def fail_next(
        self,
        n: int = 1,
        status: int = 500,
        path_contains: str = "",
        *,
        method: str | None = None,
        message: str = "Injected failure (FakeHub.fail_next)",
        headers: dict | None = None,
    ) -> None:
        """Make the next ``n`` requests whose raw path contains ``path_contains`` (and whose method
        is ``method``, if given) fail with ``status`` and a JSON ``{"error": message}`` body, before
        any processing (nothing is stored). Rules are consumed in the order they were added."""
        with self._lock:
            self._failures.append(
                _FailureRule(n, status, path_contains, method.upper() if method else None, message, dict(headers or {}))
            )

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()

    @property
    def requests(self) -> list[LoggedRequest]:
        """Copy of the log of handled requests: ``(method, path, status)`` tuples, in order."""
        with self._lock:
            return list(self._requests)

    @property
    def request_log(self) -> list[dict]:
        """Like :attr:`requests` with more detail: method, path, query (dict), status, user."""
        with self._lock:
            return [dict(r) for r in self._request_log]

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()
            self._request_log.clear()

    @property
    def server_errors(self) -> list[str]:
        """Tracebacks of unexpected exceptions in the fake itself (answered with HTTP 500)."""
        with self._lock:
            return list(self._server_errors)

    def reset(self) -> None:
        """Forget all repos, uploads, requests and failure rules (the server keeps running)."""
        with self._lock:
            self._repos.clear()
            self._pending_uploads.clear()
            self._requests.clear()
            self._request_log.clear()
            self._failures.clear()
            self._server_errors.clear()

    def create_repo(self, repo_id: str, repo_type: str = "dataset", private: bool = False) -> None:
        """Create a repo directly (no HTTP), e.g. to seed a test."""
        with self._lock:
            self._create_repo(repo_type, repo_id, private)

    def repo_exists(self, repo_id: str, repo_type: str = "dataset") -> bool:
        with self._lock:
            return (repo_type, repo_id) in self._repos

    def repo(self, repo_id: str, repo_type: str = "dataset") -> dict:
        """``{"repo_id", "repo_type", "private", "branches": {name: head oid}}``."""
        with self._lock:
            r = self._get_repo_or_keyerror(repo_type, repo_id)
            return {"repo_id": r.repo_id, "repo_type": r.repo_type, "private": r.private, "branches": dict(r.branches)}

    def repos(self) -> list[tuple[str, str]]:
        """``[(repo_type, repo_id), ...]`` of every stored repo."""
        with self._lock:
            return sorted(self._repos)

    def commits(self, repo_id: str, repo_type: str = "dataset", revision: str = "main") -> list[Commit]:
        """Commits reachable from ``revision``, oldest first (index 0 is the "initial commit")."""
        with self._lock:
            repo = self._get_repo_or_keyerror(repo_type, repo_id)
            oid: str | None = self._resolve_revision_or_keyerror(repo, revision)
            chain = []
            while oid is not None:
                commit = repo.commits[oid]
                chain.append(commit)
                oid = commit.parent
            return chain[::-1]

    def head(self, repo_id: str, repo_type: str = "dataset", revision: str = "main") -> Commit:
        return self.commits(repo_id, repo_type, revision)[-1]

    def files(self, repo_id: str, repo_type: str = "dataset", revision: str = "main") -> dict[str, bytes]:
        """Exact content of every file in the repo at ``revision``: ``{path: bytes}``
        (LFS files are returned with their real content, not the pointer).
        Includes the ``.gitattributes`` of the initial commit."""
        return self.head(repo_id, repo_type, revision).files

    def lfs_objects(self, repo_id: str, repo_type: str = "dataset") -> dict[str, bytes]:
        """LFS objects uploaded to the repo (``sha256 -> bytes``), committed or not."""
        with self._lock:
            return dict(self._get_repo_or_keyerror(repo_type, repo_id).lfs)

    def client_env(self, home: str | os.PathLike, base: dict | None = None) -> dict[str, str]:
        """Environment for a client process talking to this hub: ``HF_ENDPOINT``,
        ``HF_HUB_DISABLE_XET=1``, ``HF_TOKEN``, ``HF_HOME``/``HF_DATASETS_CACHE`` under ``home``,
        offline flags removed, telemetry/analytics/progress bars off, 127.0.0.1 excluded from proxies."""
        env = dict(os.environ if base is None else base)
        for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE",
                    "HUGGINGFACE_HUB_CACHE", "HF_TOKEN_PATH"):
            env.pop(key, None)
        home = os.fspath(home)
        no_proxy = ",".join(x for x in (env.get("NO_PROXY") or env.get("no_proxy"), "127.0.0.1", "localhost") if x)
        env.update(
            HF_ENDPOINT=self.endpoint,
            HF_HUB_DISABLE_XET="1",
            HF_HOME=os.path.join(home, "hf_home"),
            HF_DATASETS_CACHE=os.path.join(home, "hf_datasets_cache"),
            HF_HUB_DISABLE_TELEMETRY="1",
            HF_HUB_DISABLE_PROGRESS_BARS="1",
            HF_DATASETS_DISABLE_PROGRESS_BARS="1",
            GRADIO_ANALYTICS_ENABLED="False",
            NO_PROXY=no_proxy,
            no_proxy=no_proxy,
        )
        if self.token:
            env["HF_TOKEN"] = self.token
        else:
            env.pop("HF_TOKEN", None)
        return env

    def run_python(
        self,
        code: str,
        home: str | os.PathLike,
        *,
        args: list[str] | None = None,
        extra_env: dict | None = None,
        timeout: float = 120,
        check: bool = True,
        cwd: str | os.PathLike | None = None,
    ) -> subprocess.CompletedProcess:
        """Run ``python -c code [args]`` with :meth:`client_env` (+ ``extra_env``). With ``check``,
        a non-zero exit raises AssertionError showing stdout/stderr."""
        env = self.client_env(home)
        env.update(extra_env or {})
        proc = subprocess.run(
            [sys.executable, "-c", code, *(args or [])],
            env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"client subprocess failed (rc={proc.returncode})\n--- stdout ---\n{proc.stdout}\n"
                f"--- stderr ---\n{proc.stderr}"
            )
        return proc

    # ------------------------------------------------------------------ state internals (lock held)
    def _get_repo_or_keyerror(self, repo_type: str, repo_id: str) -> _Repo:
        try:
            return self._repos[(repo_type, repo_id)]
        except KeyError:
            raise KeyError(f"no {repo_type} repo {repo_id!r} on the FakeHub (have: {sorted(self._repos)})") from None

    def _resolve_revision_or_keyerror(self, repo: _Repo, revision: str) -> str:
        oid = self._resolve_revision(repo, revision)
        if oid is None:
            raise KeyError(f"revision {revision!r} not found in {repo.repo_id}")
        return oid

    def _create_repo(self, repo_type: str, repo_id: str, private: bool) -> _Repo:
        if repo_type not in REPO_TYPES:
            raise HubError(400, f"Invalid repo type {repo_type!r}")
        if (repo_type, repo_id) in self._repos:
            raise HubError(409, f"You already created this {repo_type} repo", extra={"url": self._repo_url(repo_type, repo_id)})
        repo = _Repo(repo_type=repo_type, repo_id=repo_id, private=bool(private), created_at=_now())
        self._repos[(repo_type, repo_id)] = repo
        content = DEFAULT_GITATTRIBUTES.encode()
        self._new_commit(
            repo, "main", "initial commit", "", None,
            {".gitattributes": ("regular", content)}, author=self.username,
        )
        return repo

    def _repo_url(self, repo_type: str, repo_id: str) -> str:
        return f"{self.endpoint}/{_URL_PREFIX[repo_type]}{repo_id}"

    def _resolve_revision(self, repo: _Repo, revision: str) -> str | None:
        if revision in repo.branches:
            return repo.branches[revision]
        if re.fullmatch(r"[0-9a-f]{7,40}", revision or ""):
            matches = [oid for oid in repo.commits if oid.startswith(revision)]
            if len(matches) == 1:
                return matches[0]
        return None

    def _new_commit(
        self,
        repo: _Repo,
        branch: str,
        summary: str,
        description: str,
        parent: str | None,
        changes: dict[str, tuple[str, bytes] | None],
        author: str,
        base_files: dict[str, _StoredFile] | None = None,
    ) -> Commit:
        """``changes``: path -> ("regular"|"lfs", content) or None to delete."""
        n = next(self._counter)
        oid = hashlib.sha1(f"{repo.repo_id}\n{parent}\n{summary}\n{n}\n{_now()}".encode()).hexdigest()
        files = dict(base_files if base_files is not None else (repo.commits[parent]._files if parent else {}))
        for path, change in changes.items():
            if change is None:
                files.pop(path, None)
                continue
            mode, content = change
            files[path] = _StoredFile(
                content=content, lfs=(mode == "lfs"), sha256=hashlib.sha256(content).hexdigest(), last_commit=oid
            )
        commit = Commit(oid=oid, message=summary, description=description, parent=parent, date=_now(),
                        author=author, _files=files)
        repo.commits[oid] = commit
        repo.branches[branch] = oid
        return commit

    def _lfs_patterns(self, files: dict[str, _StoredFile]) -> list[str]:
        ga = files.get(".gitattributes")
        text = ga.content.decode("utf-8", "replace") if ga else DEFAULT_GITATTRIBUTES
        out = []
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 2 and not parts[0].startswith("#") and "filter=lfs" in parts[1:]:
                out.append(parts[0])
        return out

    def _is_lfs_path(self, path: str, patterns: list[str]) -> bool:
        base = path.rsplit("/", 1)[-1]
        for pat in patterns:
            if "/" in pat.strip("/"):
                if fnmatch.fnmatch(path, pat.lstrip("/")) or fnmatch.fnmatch(path, pat.lstrip("/").replace("/**/", "/")):
                    return True
            elif fnmatch.fnmatch(base, pat):
                return True
        return False


# ====================================================================== HTTP layer
class _Response:
    def __init__(self, status: int = 200, body: bytes = b"", headers: dict | None = None,
                 content_type: str = "application/json; charset=utf-8"):
        self.status = status
        self.body = body
        self.headers = {"Content-Type": content_type, **(headers or {})}


def _json(obj: Any, status: int = 200, headers: dict | None = None) -> _Response:
    return _Response(status, json.dumps(obj).encode(), headers)


def _err_response(e: HubError) -> _Response:
    headers = dict(e.headers)
    if e.code:
        headers["X-Error-Code"] = e.code
    headers["X-Error-Message"] = e.message.encode("ascii", "replace").decode()
    return _json({"error": e.message, **e.extra}, e.status, headers)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeHub/1.0"
    fakehub: FakeHub  # set on the subclass created by FakeHub.start()

    def log_message(self, format, *args):  # silence stderr logging
        pass

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size_line = self.rfile.readline().strip()
                size = int(size_line.split(b";")[0] or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        hub = self.fakehub
        method = self.command
        body = self._read_body()
        split = urlsplit(self.path)
        raw_path = split.path
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        user = None
        try:
            with hub._lock:
                rule = next(
                    (r for r in hub._failures
                     if r.remaining > 0 and (r.method is None or r.method == method)
                     and (r.path_contains in self.path or r.path_contains in unquote(self.path))),
                    None,
                )
                if rule is not None:
                    rule.remaining -= 1
                    hub._failures = [r for r in hub._failures if r.remaining > 0]
            if rule is not None:
                resp = _json({"error": rule.message}, rule.status, {"X-Error-Message": rule.message, **rule.headers})
            else:
                user = self._authenticate(raw_path)
                resp = _Router(hub, method, raw_path, query, body, self.headers, user).dispatch()
        except HubError as e:
            resp = _err_response(e)
        except Exception:  # a bug in the fake: make it visible to the test
            tb = traceback.format_exc()
            with hub._lock:
                hub._server_errors.append(tb)
            resp = _json({"error": f"FakeHub internal error: {tb.splitlines()[-1]}"}, 500)
        with hub._lock:
            hub._requests.append(LoggedRequest(method, raw_path, resp.status))
            hub._request_log.append(
                {"method": method, "path": raw_path, "query": query, "status": resp.status, "user": user}
            )
        self.send_response(resp.status)
        for k, v in resp.headers.items():
            self.send_header(k, v)
        if "Content-Length" not in resp.headers:
            self.send_header("Content-Length", str(len(resp.body)))
        self.end_headers()
        if method != "HEAD" and resp.body:
            self.wfile.write(resp.body)

    def _authenticate(self, raw_path: str) -> str | None:
        if _LFS_PUT_RE.match(raw_path):
            return None  # pre-signed upload URL: no auth, like S3
        auth = self.headers.get("Authorization")
        if not auth:
            return None
        scheme, _, tok = auth.partition(" ")
        with self.fakehub._lock:
            user = self.fakehub._tokens.get(tok.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        return user

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = _handle


class _Router:
    def __init__(self, hub: FakeHub, method: str, raw_path: str, query: dict, body: bytes, headers, user: str | None):
        self.hub = hub
        self.method = method
        self.raw_path = raw_path
        self.query = query
        self.body = body
        self.headers = headers
        self.user = user

    # ---------------------------------------------------------------- helpers
    def require_user(self) -> str:
        if self.user is None:
            raise HubError(401, "Invalid username or password.")
        return self.user

    def json_body(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            raise HubError(400, "Invalid JSON body")

    def repo(self, repo_type: str, repo_id: str, write: bool = False) -> _Repo:
        if write:
            self.require_user()
        repo = self.hub._repos.get((repo_type, repo_id))
        if repo is None:
            raise HubError(404, "Repository not found", "RepoNotFound")
        if repo.private and self.user is None:
            raise HubError(401, "Repository not found", "RepoNotFound")
        return repo

    def revision(self, repo: _Repo, rev: str) -> Commit:
        oid = self.hub._resolve_revision(repo, rev)
        if oid is None:
            raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return repo.commits[oid]

    def bool_q(self, name: str) -> bool:
        return str(self.query.get(name, "")).lower() in ("1", "true", "yes")

    # ---------------------------------------------------------------- dispatch
    def dispatch(self) -> _Response:
        m, p = self.method, self.raw_path
        with self.hub._lock:
            if p == "/api/whoami-v2" and m in ("GET", "HEAD"):
                return self.whoami()
            if p == "/api/repos/create" and m == "POST":
                return self.create_repo()
            if p == "/api/repos/delete" and m == "DELETE":
                return self.delete_repo()
            if p == "/api/validate-yaml" and m == "POST":
                return self.validate_yaml()
            if mt := _LFS_PUT_RE.match(p):
                if m != "PUT":
                    raise HubError(405, "Method not allowed")
                return self.lfs_put(mt.group(1))
            if mt := _API_REPO_RE.match(p):
                return self.api_repo(_PLURAL_TO_TYPE[mt.group(1)], f"{unquote(mt.group(2))}/{unquote(mt.group(3))}",
                                     mt.group(4) or "")
            if mt := _LFS_BATCH_RE.match(p):
                if m != "POST":
                    raise HubError(405, "Method not allowed")
                return self.lfs_batch(_PLURAL_TO_TYPE[mt.group(1) or "models"], f"{unquote(mt.group(2))}/{unquote(mt.group(3))}")
            if mt := _RESOLVE_RE.match(p):
                if m not in ("GET", "HEAD"):
                    raise HubError(405, "Method not allowed")
                return self.resolve(_PLURAL_TO_TYPE.get(mt.group(1) or "models"),
                                    f"{unquote(mt.group(2))}/{unquote(mt.group(3))}",
                                    unquote(mt.group(4)), unquote(mt.group(5)))
        raise HubError(404, f"FakeHub: no route for {m} {p}")

    def api_repo(self, repo_type: str, repo_id: str, rest: str) -> _Response:
        m = self.method
        parts = rest.split("/") if rest else []
        action = parts[0] if parts else ""
        rev = unquote(parts[1]) if len(parts) > 1 else "main"
        sub_path = unquote("/".join(parts[2:])) if len(parts) > 2 else ""
        if action == "" and m in ("GET", "HEAD"):
            return self.repo_info(repo_type, repo_id, "main")
        if action == "revision" and m in ("GET", "HEAD") and len(parts) >= 2:
            return self.repo_info(repo_type, repo_id, unquote("/".join(parts[1:])))
        if action == "tree" and m == "GET":
            return self.tree(repo_type, repo_id, rev, sub_path.strip("/"))
        if action == "paths-info" and m == "POST":
            return self.paths_info(repo_type, repo_id, rev)
        if action == "preupload" and m == "POST":
            return self.preupload(repo_type, repo_id, rev)
        if action == "commit" and m == "POST":
            return self.commit(repo_type, repo_id, rev)
        if action == "commits" and m == "GET":
            return self.list_commits(repo_type, repo_id, rev)
        if action == "refs" and m == "GET":
            return self.refs(repo_type, repo_id)
        if action == "branch" and m in ("POST", "DELETE") and len(parts) >= 2:
            return self.branch(repo_type, repo_id, unquote("/".join(parts[1:])))
        if action == "super-squash" and m == "POST":
            return self.super_squash(repo_type, repo_id, rev)
        if action == "settings" and m == "PUT":
            return self.settings(repo_type, repo_id)
        raise HubError(404, f"FakeHub: no route for {m} /api/{repo_type}s/{repo_id}/{rest}")

    # ---------------------------------------------------------------- account
    def whoami(self) -> _Response:
        if self.user is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        return _json({
            "type": "user", "id": hashlib.sha1(self.user.encode()).hexdigest()[:24], "name": self.user,
            "fullname": self.user.title(), "email": f"{self.user}@example.invalid", "emailVerified": True,
            "isPro": False, "orgs": [], "canPay": False,
            "auth": {"type": "access_token", "accessToken": {"displayName": "fakehub", "role": "write"}},
        })

    def validate_yaml(self) -> _Response:
        payload = self.json_body() or {}
        content = payload.get("content")
        if not isinstance(content, str):
            raise HubError(400, "Missing 'content'")
        errors = []
        if content.startswith("---"):
            match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", content, re.S)
            if match is None:
                errors.append({"message": "YAML front matter is not closed by '---'"})
            else:
                try:
                    import yaml  # PyYAML ships with datasets / huggingface_hub users

                    data = yaml.safe_load(match.group(1))
                    if data is not None and not isinstance(data, dict):
                        errors.append({"message": "YAML metadata must be a mapping"})
                except ImportError:
                    pass
                except Exception as exc:  # yaml.YAMLError
                    errors.append({"message": f"Invalid YAML: {exc}"})
        if errors:
            return _json({"errors": errors, "warnings": []}, 400)
        return _json({"errors": [], "warnings": []})

    # ---------------------------------------------------------------- repos
    def create_repo(self) -> _Response:
        user = self.require_user()
        payload = self.json_body() or {}
        name = payload.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}", name):
            raise HubError(400, f"Invalid repo name: {name!r}")
        namespace = payload.get("organization") or user
        repo_type = payload.get("type") or "model"
        if "visibility" in payload:
            private = payload["visibility"] == "private"
        else:
            private = bool(payload.get("private", False))
        repo_id = f"{namespace}/{name}"
        self.hub._create_repo(repo_type, repo_id, private)
        url = self.hub._repo_url(repo_type, repo_id)
        return _json({"url": url, "name": repo_id, "id": repo_id})

    def delete_repo(self) -> _Response:
        user = self.require_user()
        payload = self.json_body() or {}
        repo_id = f"{payload.get('organization') or user}/{payload.get('name')}"
        key = (payload.get("type") or "model", repo_id)
        if key not in self.hub._repos:
            raise HubError(404, "Repository not found", "RepoNotFound")
        del self.hub._repos[key]
        return _Response(200, b"", content_type="text/plain")

    def settings(self, repo_type: str, repo_id: str) -> _Response:
        repo = self.repo(repo_type, repo_id, write=True)
        payload = self.json_body() or {}
        if "private" in payload:
            repo.private = bool(payload["private"])
        if "visibility" in payload:
            repo.private = payload["visibility"] == "private"
        return _json({})

    def repo_info(self, repo_type: str, repo_id: str, rev: str) -> _Response:
        repo = self.repo(repo_type, repo_id)
        commit = self.revision(repo, rev)
        blobs = self.bool_q("blobs")
        siblings = []
        for path, f in sorted(commit._files.items()):
            s: dict[str, Any] = {"rfilename": path}
            if blobs:
                s.update(size=f.size, blobId=f.git_oid)
                if f.lfs:
                    s["lfs"] = {"sha256": f.sha256, "size": f.size,
                                "pointerSize": len(_lfs_pointer(f.sha256, f.size))}
            siblings.append(s)
        namespace = repo_id.split("/")[0]
        info: dict[str, Any] = {
            "_id": hashlib.sha1(f"{repo_type}/{repo_id}".encode()).hexdigest()[:24],
            "id": repo_id, "author": namespace, "sha": commit.oid, "private": repo.private,
            "gated": False, "disabled": False, "downloads": 0, "likes": 0, "tags": [],
            "createdAt": repo.created_at, "lastModified": commit.date, "siblings": siblings,
            "usedStorage": sum(f.size for f in commit._files.values()),
        }
        if repo_type == "model":
            info["modelId"] = repo_id
        card = _card_data(commit._files.get("README.md"))
        if card is not None:
            info["cardData"] = card
        return _json(info)

    def refs(self, repo_type: str, repo_id: str) -> _Response:
        repo = self.repo(repo_type, repo_id)
        return _json({
            "branches": [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": oid} for b, oid in repo.branches.items()],
            "tags": [], "converts": [],
        })

    def branch(self, repo_type: str, repo_id: str, name: str) -> _Response:
        repo = self.repo(repo_type, repo_id, write=True)
        if self.method == "DELETE":
            if name not in repo.branches or name == "main":
                raise HubError(404 if name not in repo.branches else 403, f"Cannot delete branch {name}")
            del repo.branches[name]
            return _json({})
        if name in repo.branches:
            raise HubError(409, f"Reference already exists: refs/heads/{name}")
        payload = self.json_body() or {}
        start = payload.get("startingPoint") or "main"
        repo.branches[name] = self.revision(repo, start).oid
        return _json({})

    def list_commits(self, repo_type: str, repo_id: str, rev: str) -> _Response:
        repo = self.repo(repo_type, repo_id)
        oid: str | None = self.revision(repo, rev).oid
        out = []
        while oid is not None:
            c = repo.commits[oid]
            out.append({"id": c.oid, "title": c.message, "message": c.description, "date": c.date,
                        "authors": [{"user": c.author}]})
            oid = c.parent
        return _json(out)

    def super_squash(self, repo_type: str, repo_id: str, branch: str) -> _Response:
        repo = self.repo(repo_type, repo_id, write=True)
        head = self.revision(repo, branch)
        if branch not in repo.branches:
            raise HubError(400, "super-squash only works on branches")
        message = (self.json_body() or {}).get("message") or "Super-squash"
        c = self.hub._new_commit(repo, branch, message, "", None, {}, author=self.user or "",
                                 base_files=head._files)
        return _json({"commitOid": c.oid})

    # ---------------------------------------------------------------- read files
    def _entries(self, repo: _Repo, commit: Commit, expand: bool) -> tuple[dict[str, dict], dict[str, dict]]:
        """All file entries and all (implied) directory entries of a commit, keyed by path."""
        # position of each ancestor in the history (0 = commit itself), to find a folder's last commit
        age: dict[str, int] = {}
        cur: str | None = commit.oid
        while cur is not None and expand:
            age[cur] = len(age)
            cur = repo.commits[cur].parent

        def last_commit(oid: str) -> dict:
            c = repo.commits.get(oid, commit)
            return {"id": c.oid, "title": c.message, "date": c.date}

        files: dict[str, dict] = {}
        dirs: dict[str, list[str]] = {}
        for path, f in commit._files.items():
            entry: dict[str, Any] = {"type": "file", "oid": f.git_oid, "size": f.size, "path": path}
            if f.lfs:
                entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": len(_lfs_pointer(f.sha256, f.size))}
            if expand:
                entry["lastCommit"] = last_commit(f.last_commit)
            files[path] = entry
            parts = path.split("/")
            for i in range(1, len(parts)):
                dirs.setdefault("/".join(parts[:i]), []).append(path)
        dir_entries = {}
        for d, members in dirs.items():
            tree_oid = hashlib.sha1("\n".join(sorted(f"{m}:{files[m]['oid']}" for m in members)).encode()).hexdigest()
            entry = {"type": "directory", "oid": tree_oid, "size": 0, "path": d}
            if expand:
                newest = min(members, key=lambda m: age.get(commit._files[m].last_commit, 1 << 30))
                entry["lastCommit"] = last_commit(commit._files[newest].last_commit)
            dir_entries[d] = entry
        return files, dir_entries

    def tree(self, repo_type: str, repo_id: str, rev: str, path: str) -> _Response:
        repo = self.repo(repo_type, repo_id)
        commit = self.revision(repo, rev)
        files, dirs = self._entries(repo, commit, self.bool_q("expand"))
        if path and path not in dirs:
            if path in files:
                raise HubError(404, f"{path} is a file, not a directory", "EntryNotFound")
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
        prefix = path + "/" if path else ""
        recursive = self.bool_q("recursive")
        out = []
        for entries in (dirs, files):
            for p in sorted(entries):
                if not p.startswith(prefix) or p == path:
                    continue
                if recursive or "/" not in p[len(prefix):]:
                    out.append(entries[p])
        return _json(out)

    def paths_info(self, repo_type: str, repo_id: str, rev: str) -> _Response:
        repo = self.repo(repo_type, repo_id)
        commit = self.revision(repo, rev)
        ctype = (self.headers.get("Content-Type") or "").lower()
        if "json" in ctype:
            payload = self.json_body() or {}
            paths = payload.get("paths") or []
            expand = bool(payload.get("expand"))
        else:
            form = parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)
            paths = form.get("paths", [])
            expand = (form.get("expand", ["false"])[-1]).lower() in ("1", "true")
        if isinstance(paths, str):
            paths = [paths]
        files, dirs = self._entries(repo, commit, expand)
        out = []
        for p in paths:
            p = str(p).strip("/")
            if p in files:
                out.append(files[p])
            elif p in dirs:
                out.append(dirs[p])
        return _json(out)

    def resolve(self, repo_type: str, repo_id: str, rev: str, path: str) -> _Response:
        repo = self.repo(repo_type, repo_id)
        commit = self.revision(repo, rev)
        f = commit._files.get(path)
        if f is None:
            raise HubError(404, "Entry not found", "EntryNotFound", headers={"X-Repo-Commit": commit.oid})
        headers = {
            "X-Repo-Commit": commit.oid,
            "ETag": f'"{f.etag}"',
            "Accept-Ranges": "bytes",
            "Content-Disposition": f'inline; filename="{path.rsplit("/", 1)[-1]}"',
        }
        if f.lfs:
            headers["X-Linked-Size"] = str(f.size)
            headers["X-Linked-Etag"] = f'"{f.sha256}"'
        data, status = f.content, 200
        rng = self.headers.get("Range")
        if rng:
            mt = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", rng)
            if mt and (mt.group(1) or mt.group(2)):
                total = f.size
                if mt.group(1):
                    start = int(mt.group(1))
                    end = int(mt.group(2)) if mt.group(2) else total - 1
                else:  # suffix range: last N bytes
                    start, end = max(total - int(mt.group(2)), 0), total - 1
                end = min(end, total - 1)
                if start >= total or start > end:
                    return _Response(416, b"", {"Content-Range": f"bytes */{total}", **headers},
                                     content_type="application/octet-stream")
                data, status = f.content[start:end + 1], 206
                headers["Content-Range"] = f"bytes {start}-{end}/{total}"
        return _Response(status, data, headers, content_type="application/octet-stream")

    # ---------------------------------------------------------------- uploads
    def preupload(self, repo_type: str, repo_id: str, rev: str) -> _Response:
        repo = self.repo(repo_type, repo_id, write=True)
        commit = self.revision(repo, rev)
        if self.bool_q("create_pr"):
            raise HubError(400, "FakeHub does not support pull requests (create_pr)")
        payload = self.json_body()
        if not isinstance(payload, dict) or not isinstance(payload.get("files"), list):
            raise HubError(400, "Body must be {'files': [{'path', 'sample', 'size'}]}")
        patterns = self.hub._lfs_patterns(commit._files)
        out = []
        for item in payload["files"]:
            if not isinstance(item, dict) or not isinstance(item.get("path"), str) or not isinstance(item.get("size"), int):
                raise HubError(400, f"Malformed preupload entry: {item!r}")
            path = _check_path(item["path"])
            try:
                sample = base64.b64decode(item.get("sample") or "", validate=True)
            except (binascii.Error, ValueError):
                raise HubError(400, f"Invalid base64 sample for {path}")
            lfs = (item["size"] >= self.hub.lfs_threshold or b"\0" in sample
                   or self.hub._is_lfs_path(path, patterns))
            entry = {"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False}
            existing = commit._files.get(path)
            if existing is not None:
                entry["oid"] = existing.sha256 if existing.lfs else existing.git_oid
            out.append(entry)
        return _json({"files": out, "commitOid": commit.oid})

    def lfs_batch(self, repo_type: str, repo_id: str) -> _Response:
        repo = self.repo(repo_type, repo_id, write=True)
        payload = self.json_body()
        if not isinstance(payload, dict) or payload.get("operation") != "upload":
            raise HubError(400, "FakeHub LFS batch only supports operation=upload")
        transfers = payload.get("transfers") or ["basic"]
        if "basic" not in transfers:
            raise HubError(400, f"FakeHub only offers the 'basic' LFS transfer, client asked for {transfers}")
        objects = payload.get("objects")
        if not isinstance(objects, list):
            raise HubError(400, "Missing 'objects'")
        out = []
        for obj in objects:
            oid, size = (obj or {}).get("oid"), (obj or {}).get("size")
            if not isinstance(oid, str) or not _SHA256_RE.match(oid) or not isinstance(size, int) or size < 0:
                out.append({"oid": str(oid), "size": size if isinstance(size, int) else 0,
                            "error": {"code": 422, "message": "oid must be a sha256 hex digest and size an int"}})
                continue
            if oid in repo.lfs and len(repo.lfs[oid]) == size:
                out.append({"oid": oid, "size": size})  # already there: no actions, client skips the PUT
                continue
            upload_id = secrets.token_hex(16)
            self.hub._pending_uploads[upload_id] = ((repo.repo_type, repo.repo_id), oid, size)
            out.append({"oid": oid, "size": size, "authenticated": True, "actions": {
                "upload": {"href": f"{self.hub.endpoint}/__fakehub/lfs/{upload_id}", "expires_in": 3600}}})
        return _json({"transfer": "basic", "objects": out, "hash_algo": "sha256"},
                     headers={"Content-Type": "application/vnd.git-lfs+json"})

    def lfs_put(self, upload_id: str) -> _Response:
        pending = self.hub._pending_uploads.get(upload_id)
        if pending is None:
            raise HubError(403, "Unknown or already used upload URL")
        key, oid, size = pending
        data = self.body
        if len(data) != size:
            raise HubError(400, f"Size mismatch: batch announced {size} bytes, got {len(data)}")
        if hashlib.sha256(data).hexdigest() != oid:
            raise HubError(400, f"sha256 mismatch: batch announced {oid}")
        repo = self.hub._repos.get(key)
        if repo is None:
            raise HubError(404, "Repository not found", "RepoNotFound")
        repo.lfs[oid] = data
        del self.hub._pending_uploads[upload_id]
        return _Response(200, b"", {"ETag": f'"{hashlib.md5(data).hexdigest()}"'}, content_type="text/plain")

    def commit(self, repo_type: str, repo_id: str, rev: str) -> _Response:
        user = self.require_user()
        repo = self.repo(repo_type, repo_id, write=True)
        if self.bool_q("create_pr"):
            raise HubError(400, "FakeHub does not support pull requests (create_pr)")
        if rev not in repo.branches:
            if self.hub._resolve_revision(repo, rev) is not None:
                raise HubError(400, f"Cannot commit to a non-branch revision: {rev}")
            raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/x-ndjson":
            raise HubError(400, f"Commit body must be application/x-ndjson, got {ctype!r}")
        lines = []
        for i, raw in enumerate(self.body.decode("utf-8", "replace").splitlines()):
            if not raw.strip():
                continue
            try:
                item = json.loads(raw)
            except ValueError:
                raise HubError(400, f"Line {i + 1} of the commit payload is not valid JSON")
            if not isinstance(item, dict) or not isinstance(item.get("key"), str) or not isinstance(item.get("value"), dict):
                raise HubError(400, f"Line {i + 1}: expected {{'key': str, 'value': object}}")
            lines.append(item)
        if not lines or lines[0]["key"] != "header":
            raise HubError(400, "The first line of the commit payload must be the header")
        header = lines[0]["value"]
        summary = header.get("summary")
        if not isinstance(summary, str) or not summary.strip():
            raise HubError(400, "Commit header needs a non-empty 'summary'")
        description = header.get("description") or ""
        head_oid = repo.branches[rev]
        parent_commit = header.get("parentCommit")
        if parent_commit is not None:
            if not isinstance(parent_commit, str) or not re.fullmatch(r"[0-9a-fA-F]{5,40}", parent_commit):
                raise HubError(400, f"Invalid parentCommit {parent_commit!r}")
            if not head_oid.startswith(parent_commit.lower()):
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
        head_files = repo.commits[head_oid]._files
        current = dict(head_files)
        changes: dict[str, tuple[str, bytes] | None] = {}
        for i, item in enumerate(lines[1:], start=2):
            key, value = item["key"], item["value"]
            if key == "header":
                raise HubError(400, f"Line {i}: duplicate header")
            if key == "file":
                path = _check_path(value.get("path"))
                content = value.get("content")
                encoding = value.get("encoding", "utf-8")
                if not isinstance(content, str):
                    raise HubError(400, f"Line {i}: 'content' must be a string")
                if encoding == "base64":
                    try:
                        data = base64.b64decode(content, validate=True)
                    except (binascii.Error, ValueError):
                        raise HubError(400, f"Line {i}: invalid base64 content for {path}")
                elif encoding in ("utf-8", "utf8"):
                    data = content.encode()
                else:
                    raise HubError(400, f"Line {i}: unknown encoding {encoding!r}")
                if b"\0" in data[:8000]:
                    raise HubError(400, f"Your push was rejected because it contains binary files ({path}). "
                                        "Binary files must be uploaded through LFS.")
                changes[path] = ("regular", data)
                current[path] = None  # type: ignore[assignment]
            elif key == "lfsFile":
                path = _check_path(value.get("path"))
                oid = value.get("oid")
                if value.get("algo", "sha256") != "sha256" or not isinstance(oid, str) or not _SHA256_RE.match(oid):
                    raise HubError(400, f"Line {i}: lfsFile needs algo 'sha256' and a sha256 hex 'oid'")
                data = repo.lfs.get(oid)
                if data is None:
                    raise HubError(400, f"Line {i}: LFS object {oid} for {path} was never uploaded to this repo")
                if value.get("size") is not None and value.get("size") != len(data):
                    raise HubError(400, f"Line {i}: size {value.get('size')} does not match LFS object ({len(data)})")
                changes[path] = ("lfs", data)
                current[path] = None  # type: ignore[assignment]
            elif key == "deletedFile":
                path = _check_path(value.get("path"))
                if path not in current:
                    raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                changes[path] = None
                current.pop(path)
            elif key == "deletedFolder":
                folder = _check_path(str(value.get("path", "")).rstrip("/"))
                victims = [p for p in current if p.startswith(folder + "/")]
                if not victims:
                    raise HubError(404, f"A folder with this name doesn't exist: {folder}", "EntryNotFound")
                for p in victims:
                    changes[p] = None
                    current.pop(p)
            else:
                raise HubError(400, f"Line {i}: unknown operation key {key!r}")
        commit = self.hub._new_commit(repo, rev, summary, description, head_oid, changes, author=user)
        return _json({
            "success": True, "commitOid": commit.oid,
            "commitUrl": f"{self.hub._repo_url(repo.repo_type, repo.repo_id)}/commit/{commit.oid}",
            "commitMessage": summary,
        })


def _check_path(path: Any) -> str:
    if not isinstance(path, str) or not path or path.startswith("/") or "\\" in path:
        raise HubError(400, f"Invalid path in repo: {path!r}")
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts) or parts[0] == ".git":
        raise HubError(400, f"Invalid path in repo: {path!r}")
    return path


def _card_data(readme: _StoredFile | None) -> dict | None:
    if readme is None:
        return None
    text = readme.content.decode("utf-8", "replace")
    match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", text, re.S)
    if match is None:
        return None
    try:
        import yaml

        data = yaml.safe_load(match.group(1))
    except Exception:
        return None
    return data if isinstance(data, dict) else None
