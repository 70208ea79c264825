"""Act as annotators over raw HTTP, and build small data sets for a test server.

`ApiUser` speaks Gradio's HTTP API the way a script or the browser does:
queued endpoints (`next`, `submit`, `skip`, `progress`) through
`POST /gradio_api/call/<name>` + its SSE result, the page's `queue=False`
load event through `POST /gradio_api/run/<name>`, and the page's clicks
through its JSON routes (`POST /ann/<route>`). Identity is what the
server knows from the cookies: Gradio's password login, or a forged OAuth
`session` cookie of a simulated Space. Nothing in a request body names a user.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import httpx

from oauth_cookies import OAUTH_SECRET, forge_session_cookie

SHAPES = ("circle", "square", "triangle", "other")


class ApiError(Exception):
    """The server refused a call: an HTTP status other than 200, or a Gradio `event: error`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class ApiUser:
    """One person (or one anonymous caller) talking to the app over HTTP."""

    def __init__(self, base_url: str, name: str | None = None, *, cookie: str | None = None,
                 timeout: float = 60.0) -> None:
        self.base_url = base_url
        self.name = name
        headers = {"Cookie": f"session={cookie}"} if cookie else {}
        self.http = httpx.Client(base_url=base_url, timeout=timeout, headers=headers)

    # --- ways to be somebody ------------------------------------------------

    @classmethod
    def with_password(cls, base_url: str, name: str, password: str) -> "ApiUser":
        user = cls(base_url, name)
        r = user.http.post("/login", data={"username": name, "password": password})
        if r.status_code != 200:
            user.close()
            raise ApiError(r.status_code, f"login as {name} failed: {r.text[:200]}")
        return user

    @classmethod
    def with_oauth(cls, base_url: str, name: str, secret: str = OAUTH_SECRET, **cookie_args: Any) -> "ApiUser":
        return cls(base_url, name, cookie=forge_session_cookie(name, secret, **cookie_args))

    @classmethod
    def anonymous(cls, base_url: str) -> "ApiUser":
        return cls(base_url, None)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "ApiUser":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transport ----------------------------------------------------------

    def call(self, api_name: str, *data: Any) -> list[Any]:
        """A queued endpoint through /gradio_api/call: the list of outputs, or ApiError."""
        r = self.http.post(f"/gradio_api/call/{api_name}", json={"data": list(data)})
        if r.status_code != 200:
            raise ApiError(r.status_code, _detail(r))
        event_id = r.json()["event_id"]
        r = self.http.get(f"/gradio_api/call/{api_name}/{event_id}")
        if r.status_code != 200:
            raise ApiError(r.status_code, _detail(r))
        event = payload = None
        for line in r.text.splitlines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event in ("complete", "error"):
                payload = line[5:].strip()
                if event == "error":
                    try:
                        message = (json.loads(payload) or {}).get("error")
                    except (ValueError, AttributeError):
                        message = payload
                    raise ApiError(200, str(message))
                return json.loads(payload)
        raise ApiError(r.status_code, f"no result in the event stream: {r.text[:300]}")

    def run(self, api_name: str, *data: Any) -> list[Any]:
        """A queue=False event (the page's clicks) through /gradio_api/run: the outputs, or ApiError."""
        r = self.http.post(f"/gradio_api/run/{api_name}", json={"data": list(data)})
        if r.status_code != 200:
            raise ApiError(r.status_code, _detail(r))
        return r.json()["data"]

    def click(self, route: str, **body: Any) -> dict[str, Any]:
        """One of the page's JSON click routes (answer, skip, back, next, saved): the view, or ApiError."""
        r = self.http.post(f"/ann/{route}", json=body)
        if r.status_code != 200:
            raise ApiError(r.status_code, _detail(r))
        return r.json()

    def post_event(self, fn_index: int, queued: bool, data: list[Any]) -> httpx.Response:
        """Trigger any event of the page by its index, as the browser does (named or not); the raw reply."""
        if queued:
            return self.http.post("/gradio_api/queue/join", json={
                "data": data, "fn_index": fn_index, "session_hash": "sec" + str(fn_index), "event_data": None})
        return self.http.post("/gradio_api/run/predict", json={"data": data, "fn_index": fn_index})

    def config(self) -> dict[str, Any]:
        r = self.http.get("/config")
        if r.status_code != 200:
            raise ApiError(r.status_code, _detail(r))
        return r.json()

    def named_endpoints(self) -> dict[str, dict[str, Any]]:
        """api name -> {"queue": bool, "inputs": number of parameters}, from /config and /gradio_api/info."""
        info = self.http.get("/gradio_api/info").json()["named_endpoints"]
        queued = {d.get("api_name"): d.get("queue") is not False for d in self.config()["dependencies"]}
        return {name.lstrip("/"): {"queue": queued.get(name.lstrip("/"), True), "inputs": len(spec["parameters"])}
                for name, spec in info.items()}

    # --- the programmatic API -----------------------------------------------

    def next(self) -> dict[str, Any]:
        return self.call("next")[0]

    def submit(self, ticket: Any, answer: Any, comment: Any = "") -> dict[str, Any]:
        return self.call("submit", ticket, answer, comment)[0]

    def skip(self, ticket: Any) -> dict[str, Any]:
        return self.call("skip", ticket)[0]

    def progress(self) -> dict[str, Any]:
        return self.call("progress")[0]

    def get(self, url: str) -> httpx.Response:
        return self.http.get(url)


def _detail(r: httpx.Response) -> str:
    try:
        body = r.json()
    except ValueError:
        return r.text[:300]
    if isinstance(body, dict):
        detail = body.get("detail", body.get("error", body))
        if isinstance(detail, dict):
            detail = detail.get("error", detail)
        return str(detail)
    return str(body)


def start_many(*specs: tuple[Path, dict[str, str]]) -> list[Any]:
    """Start several app servers at once (`apphelpers.start_app(data_dir, env=env)` each).

    A start is mostly `import gradio`; two at once take little longer than one. If any start
    fails, the others are stopped and the error is raised.
    """
    from concurrent.futures import ThreadPoolExecutor

    from apphelpers import start_app

    with ThreadPoolExecutor(len(specs)) as pool:
        futures = [pool.submit(start_app, data_dir, env=env) for data_dir, env in specs]
    servers, errors = [], []
    for f in futures:
        try:
            servers.append(f.result())
        except Exception as exc:  # noqa: BLE001 - re-raised below after cleaning up
            errors.append(exc)
    if errors:
        for s in servers:
            s.stop()
        raise errors[0]
    return servers


# --- test data -----------------------------------------------------------------

def make_images(folder: Path, n: int, size: tuple[int, int] = (240, 180),
                classes: Iterable[str] = ("circle", "square", "triangle")) -> list[Path]:
    """`n` small PNGs in class sub-folders (their names become suggestions), each showing its number."""
    from PIL import Image, ImageDraw

    classes = list(classes)
    paths = []
    w, h = size
    for i in range(n):
        shape = classes[i % len(classes)]
        sub = folder / shape
        sub.mkdir(parents=True, exist_ok=True)
        img = Image.new("RGB", size, (240 - (i * 37) % 120, 240 - (i * 53) % 120, 255))
        draw = ImageDraw.Draw(img)
        box = (w // 4, h // 4, 3 * w // 4, 3 * h // 4)
        if shape == "circle":
            draw.ellipse(box, fill=(37, 99, 235))
        elif shape == "square":
            draw.rectangle(box, fill=(22, 163, 74))
        else:
            draw.polygon([(w // 2, h // 5), (w // 5, 4 * h // 5), (4 * w // 5, 4 * h // 5)], fill=(220, 38, 38))
        draw.text((6, 6), f"#{i}", fill=(0, 0, 0))
        path = sub / f"{shape}_{i:03d}.png"
        img.save(path)
        paths.append(path)
    return paths


def write_task(path: Path, *, overlap: int = 2, comment: bool = True, kind: str = "single_label",
               labels: Iterable[str] = SHAPES, order: str = "sequential", title: str = "Test shapes") -> Path:
    lines = [f'title = "{title}"', 'question = "Which shape?"', f'kind = "{kind}"',
             f"comment = {'true' if comment else 'false'}", f"overlap = {overlap}", f'order = "{order}"',
             'suggestion_column = "label"', 'guidelines = "Pick the shape."']
    for i, label in enumerate(labels):
        lines += ["", "[[labels]]", f'name = "{label}"', f'key = "{i + 1}"']
    path.write_text("\n".join(lines) + "\n")
    return path


def add_users(password_file: Path, names: Iterable[str]) -> dict[str, str]:
    """Password-mode users (`annotator.auth.PasswordFile`); returns name -> password."""
    from annotator.auth import PasswordFile

    users = {name: f"pw-{name}-secret" for name in names}
    passwords = PasswordFile(password_file)
    for name, password in users.items():
        passwords.add(name, password)
    return users


@dataclass
class StoreSnapshot:
    """What a stopped server left in its DuckDB file."""
    stats: dict[str, Any]
    responses: list[Any]  # annotator.store.Response
    history: dict[tuple[int, str], list[Any]]
    record_ids: list[int]

    def by_user(self, user: str) -> dict[int, Any]:
        return {r.record_id: r for r in self.responses if r.user_id == user}

    def submitted_per_record(self) -> dict[int, int]:
        counts = {rid: 0 for rid in self.record_ids}
        for r in self.responses:
            if r.status == "submitted":
                counts[r.record_id] += 1
        return counts


def labels_of(answer: dict[str, Any]) -> tuple[str, ...]:
    """A one-question task's stored answer ({"label": "cat"}, {"labels": [...]}, a skip's {}) as the tuple of
    labels the tests written before typed answers (issue 15) compare with."""
    return tuple(label for value in answer.values() for label in ([value] if isinstance(value, str) else value))


def read_store(data_dir: Path, store_url: str | None = None) -> StoreSnapshot:
    """Read everything a *stopped* server stored: its DuckDB file (one process owns it), or PostgreSQL."""
    from annotator.pg_store import PgStore
    from annotator.store import Store

    store = PgStore(store_url) if store_url else Store(data_dir / "annotator.duckdb")
    try:
        responses = [r for batch in store.iter_responses() for r in batch]
        history = {}
        for r in responses:
            rows = store.history(r.record_id, r.user_id)
            if rows:
                history[(r.record_id, r.user_id)] = rows
        return StoreSnapshot(store.stats(), responses, history, store.record_ids())
    finally:
        store.close()
