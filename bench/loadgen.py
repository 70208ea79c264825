"""Simulated annotators: the HTTP a browser sends for a click and its image.

Shared by `bench/crowd.py`, `bench/drills.py` and the drill/hostile-input tests.

The real app (`app.py`): opening the page runs Gradio's load event (one
`POST /gradio_api/run/predict` with its `fn_index` and the tab's
`session_hash`), whose output carries the first view as JSON. From then on
the page's own script does the clicking: `POST /ann/answer` (or `/skip`)
with the ticket of the record on screen, the answer and the comment, as
JSON, with the login cookie; the answer is the next view as JSON: the record
now on screen and the buffered ones after it (tickets and signed image URLs
`/img/<id>?u=&e=&s=`), progress and saved status. The page swaps to the next
buffered record at once and GETs the images of the buffered records ahead of
time, once each (their URLs are immutable). Once it has no answer left to
send and the last reply said "pending", the script posts `/ann/saved`,
whose reply waits for the commit (bench/crowd.py); a waiting page posts
`/ann/next` when the view says so. Each tab also holds a
`GET /gradio_api/heartbeat/<session_hash>` stream open; closing it runs the
app's unload handler (which releases the person's leases).

The baseline (`bench/baseline_app.py`): a click is a queued event, so the
browser sends `POST /gradio_api/queue/join` and reads the result from the
`GET /gradio_api/queue/data?session_hash=` event stream; the image comes
back as a Gradio file URL, fetched once per record (no preload).

Everything here is asyncio + httpx, one AsyncClient (own cookie jar) per
simulated person, so hundreds of people fit in one process.
"""

from __future__ import annotations

import asyncio
import html
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import string
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from annotator.model import decode_answer  # noqa: E402
from annotator.ui.annotate import CLICK_ROUTE  # noqa: E402  (where the page posts its clicks)

CACHE = Path(os.environ.get("ANNOTATOR_BENCH_CACHE", Path.home() / ".cache" / "annotator-bench"))

# --- generated inputs ------------------------------------------------------------


def make_images(folder: Path, n: int, seed: int = 0) -> Path:
    """`n` small JPEGs (64x48 .. 320x240, a shape on a noisy background) in `folder`."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for i in range(n):
        w = rng.randint(64, 320)
        h = max(48, min(240, int(w * rng.uniform(0.6, 0.9))))
        img = Image.effect_noise((w, h), rng.uniform(10, 60)).convert("RGB")
        draw = ImageDraw.Draw(img)
        colour = tuple(rng.randrange(256) for _ in range(3))
        x0, y0 = rng.randint(0, w // 2), rng.randint(0, h // 2)
        box = (x0, y0, x0 + rng.randint(10, w // 2), y0 + rng.randint(10, h // 2))
        (draw.ellipse if i % 2 else draw.rectangle)(box, fill=colour)
        img.save(folder / f"img_{i:06d}.jpg", quality=80)
    return folder


def user_names(n: int) -> list[str]:
    return [f"ann{i:04d}" for i in range(n)]


def password_for(user: str) -> str:
    return f"pw-{user}-bench"


def _hash(user: str) -> tuple[str, str]:
    sys.path.insert(0, str(ROOT))
    from annotator.auth import hash_password
    return user, hash_password(password_for(user))


def write_password_file(path: Path, users: list[str], extra: dict[str, str] | None = None) -> Path:
    """The app's PASSWORD_FILE for `users` (password `password_for(user)`), with the app's own hashing.

    Hashing is the app's pbkdf2 (about 0.1 s a user), so hashes are cached in
    CACHE/passwords.json and reused across runs. `extra`: {user: password}.
    """
    CACHE.mkdir(parents=True, exist_ok=True)
    cache_file = CACHE / "passwords.json"
    try:
        cached: dict[str, str] = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cached = {}
    missing = [u for u in users if u not in cached]
    if missing:
        with ProcessPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
            cached.update(dict(pool.map(_hash, missing, chunksize=16)))
        tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cached))
        os.replace(tmp, cache_file)
    table = {u: cached[u] for u in users}
    if extra:
        sys.path.insert(0, str(ROOT))
        from annotator.auth import hash_password
        table.update({u: hash_password(p) for u, p in extra.items()})
    path.write_text(json.dumps(table))
    return path


def write_task(path: Path, labels: list[str], overlap: int, *, comment: bool = True, order: str = "sequential") -> Path:
    lines = ['title = "Crowd benchmark"', 'question = "Which label?"', 'kind = "single_label"',
             f"comment = {'true' if comment else 'false'}", f"overlap = {overlap}", f'order = "{order}"', ""]
    for i, name in enumerate(labels):
        lines += ["[[labels]]", f'name = "{name}"', f'key = "{i + 1}"', ""]
    path.write_text("\n".join(lines))
    return path


# --- servers ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """A server process (the app or the baseline) started by `start_server`."""
    process: subprocess.Popen
    url: str
    env: dict[str, str]
    log_path: Path
    kind: str

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def data_dir(self) -> Path:
        return Path(self.env["DATA_DIR"])

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def start_server(kind: str, env: dict[str, str], log_path: Path, *, port: int | None = None,
                 timeout: float = 180, root: Path = ROOT) -> Server:
    """Start `app.py` (kind "ours") or `bench/baseline_app.py` (kind "baseline"); wait until it answers.

    `root`: the checkout to run it from (another revision's, for a before/after benchmark). Offline from
    the Hub unless `env` says HF_HUB_OFFLINE otherwise (the tests' fake Hub)."""
    port = port or free_port()
    full = {"HF_HUB_OFFLINE": "1", **env, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1",
            "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    script = root / "app.py" if kind == "ours" else root / "bench" / "baseline_app.py"
    with open(log_path, "ab") as log:
        process = subprocess.Popen([sys.executable, str(script)], cwd=root, env=full,
                                   stdout=log, stderr=subprocess.STDOUT)
    server = Server(process, f"http://127.0.0.1:{port}", full, log_path, kind)
    probe = "/healthz" if kind == "ours" else "/"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{kind} server exited with {process.returncode}:\n{server.log()[-4000:]}")
        try:
            if httpx.get(server.url + probe, timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    server.kill()
    raise RuntimeError(f"{kind} server did not answer within {timeout}s:\n{server.log()[-4000:]}")


def ingest(env: dict[str, str]) -> None:
    """`python -m annotator ingest` with the app's settings, without any LD_PRELOAD shim (set-up, not measured)."""
    plain = {k: v for k, v in env.items() if k not in ("LD_PRELOAD", "FSYNC_DELAY_US")}
    done = subprocess.run([sys.executable, "-m", "annotator", "ingest"], cwd=ROOT, env=plain,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ingest failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


def app_env(folder: Path, users: list[str], *, records: int = 200, overlap: int = 2,
            labels: tuple[str, ...] = ("cat", "dog", "bird", "other"), source: Path | None = None,
            extra_users: dict[str, str] | None = None, base: dict[str, str] | None = None) -> dict[str, str]:
    """Files and environment for app.py in `folder`: images, task, password file, fresh DATA_DIR."""
    folder.mkdir(parents=True, exist_ok=True)
    if source is None:
        source = folder / "source"
        if not source.exists():
            make_images(source, records)
    task = write_task(folder / "task.toml", list(labels), overlap)
    passwords = write_password_file(folder / "passwords.json", users, extra_users)
    env = dict(os.environ if base is None else base)
    env.update({"DATA_DIR": str(folder / "data"), "CACHE_DIR": str(folder / "cache"),
                "GRADIO_TEMP_DIR": str(folder / "gradio-tmp"), "SOURCE_DIR": str(source),
                "TASK_FILE": str(task), "AUTH_MODE": "password", "PASSWORD_FILE": str(passwords),
                "LOG_LEVEL": "WARNING"})
    return env


# --- what a page shows -------------------------------------------------------------

_BOOT = re.compile(r'data-view="([^"]*)"')
_LABEL = re.compile(r'data-label="([^"]*)"')


@dataclass
class View:
    """The annotate view after one request, as the page's script would show it."""
    state: str  # ready | waiting | done | quota | signed_out | unknown
    ticket: str = ""
    record_id: int | None = None
    image_url: str | None = None
    upcoming: list[dict[str, Any]] = field(default_factory=list)  # the buffered records, with tickets
    saved: str = ""  # saved | pending | failed | "" (no status shown)
    saved_text: str = ""
    message: str | None = None
    timer: float | None = None  # seconds, when a waiting page asks again
    comment: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def images(self) -> list[str]:
        """Every image of the record on screen (a record may show several: docs/records.md)."""
        return _image_urls(self.raw.get("item") or {}) if self.state == "ready" else []

    @property
    def preload(self) -> list[str]:
        """What the page preloads: every image of every buffered record."""
        return [url for u in self.upcoming for url in _image_urls(u)]


def _image_urls(item: dict[str, Any]) -> list[str]:
    return [i["url"] for i in item.get("images") or ()] or [item["image_url"]]


def saved_kind(data: dict[str, Any]) -> str:
    return "failed" if data.get("retrying") else "pending" if data.get("pending") else "saved"


def view_of(data: dict[str, Any]) -> View:
    """The page's JSON view (a click route's answer, or the page load's boot data) -> View."""
    view = View(state=data.get("state", "unknown"), message=data.get("message"), raw=data)
    if "saved" in data:
        view.saved, view.saved_text = saved_kind(data), data["saved"]
    view.timer = data.get("recheck_after")
    item = data.get("item")
    if view.state == "ready" and item:
        view.ticket, view.record_id, view.image_url = item["record"], item["record_id"], item["image_url"]
        view.comment = item.get("comment") or ""
        view.upcoming = list(data.get("upcoming") or [])
    return view


def boot_view(outputs: list[Any]) -> View:
    """The page load event's output (the boot element carrying the first view as JSON) -> View."""
    found = _BOOT.search(outputs[0] if outputs and isinstance(outputs[0], str) else "")
    if not found:
        return View(state="unknown", raw={"outputs": outputs})
    return view_of(json.loads(html.unescape(found.group(1))))


class EventError(Exception):
    """An event or request did not succeed; `kind` groups errors for the report."""

    def __init__(self, kind: str, message: str = "") -> None:
        super().__init__(f"{kind}: {message}" if message else kind)
        self.kind = kind
        self.message = message


def _kind_of(exc: BaseException) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        return "connect"
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
        return "connection_lost"
    return type(exc).__name__


@dataclass
class Profile:
    """What a page learns from /config: each named event's fn_index and trigger component."""
    fn: dict[str, int]
    trigger: dict[str, int | None]
    labels: list[str]

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Profile":
        fn: dict[str, int] = {}
        trigger: dict[str, int | None] = {}
        for i, dep in enumerate(config["dependencies"]):
            name = dep.get("api_name")
            if not name:
                continue
            fn[name] = dep.get("id", i)
            targets = dep.get("targets") or []
            trigger[name] = targets[0][0] if targets and targets[0] and isinstance(targets[0][0], int) else None
        labels: list[str] = []
        radio: list[str] = []
        for comp in config.get("components", []):
            props = comp.get("props", {})
            if props.get("elem_id") == "ann-view":  # the view's label buttons name the labels
                labels = [html.unescape(n) for n in _LABEL.findall(str(props.get("value", "")))]
            elif comp.get("type") == "radio" and props.get("choices") and not radio:  # the baseline's
                radio = [c[0] if isinstance(c, (list, tuple)) else c for c in props["choices"]]
        # ours has no radio on the annotate view (the admins' Review section has, with other names)
        return cls(fn, trigger, labels or radio)


# --- recording -------------------------------------------------------------------


@dataclass
class Recorder:
    """Latencies and counts of one run (times in seconds, monotonic clock)."""
    click: list[float] = field(default_factory=list)  # POST of a click until its answer
    click_at: list[float] = field(default_factory=list)  # when each of those clicks started
    click_to_next: list[float] = field(default_factory=list)  # + the main image when not preloaded
    image: list[float] = field(default_factory=list)  # main image fetched on the click path
    preload: list[float] = field(default_factory=list)  # images fetched ahead of time
    saved_check: list[float] = field(default_factory=list)
    # from the key press of a person's latest answer until the page was told it is committed (by the
    # answer's own reply, or by a saved check)
    answer_to_saved: list[float] = field(default_factory=list)
    page_load: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)
    events: Counter = field(default_factory=Counter)
    window: tuple[float, float] = (0.0, float("inf"))

    def in_window(self, t: float) -> bool:
        return self.window[0] <= t < self.window[1]

    def error(self, kind: str) -> None:
        self.errors[kind] += 1


@dataclass
class Answer:
    user: str
    record_id: int
    label: str
    comment: str
    at: float  # when the click's answer arrived (monotonic)
    pressed: float = 0.0  # when the key was pressed (monotonic)
    answer: dict[str, Any] | None = None  # the object sent, for a task of several questions (crowd --task)

    def held_in(self, stored: dict[str, Any]) -> bool:
        """Whether the answer the store holds (a value by question) is this one."""
        return list(stored.values()) == [self.label] if self.answer is None else stored == self.answer


@dataclass
class Person:
    """One simulated annotator's account: what the server accepted and what it said was saved."""
    user: str
    accepted: list[Answer] = field(default_factory=list)
    saved_upto: int = 0  # accepted[:saved_upto] were reported committed ("All answers saved")
    failed_seen: bool = False  # the page said "not saved, retrying"
    told_done_at: float | None = None
    quota_at: float | None = None  # told they gave the most answers one person gives (not "done")
    waiting_seen: int = 0


# --- a browser tab for the real app ----------------------------------------------

_DROPPED = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


async def send(client: httpx.AsyncClient, rec: "Recorder", method: str, url: str, **kw: Any) -> httpx.Response:
    """One request; retried once when the connection was dropped before any answer came back.

    Browsers do the same when a reused keep-alive connection turns out to be
    closed (uvicorn closes idle ones after 5 s; a request can cross the close).
    A retried click may reach the server twice: the app must (and does) treat
    the second as a replay. Retries are counted in rec.events["retry_after_dropped_connection"].
    """
    try:
        return await client.request(method, url, **kw)
    except _DROPPED:
        rec.events["retry_after_dropped_connection"] += 1
        return await client.request(method, url, **kw)



def _json(r: httpx.Response) -> Any:
    try:
        return r.json()
    except ValueError:
        return r.text


def _session_hash() -> str:
    return "".join(random.choice(string.ascii_lowercase + string.digits) for _ in range(11))


class _Tab:
    """What every simulated tab does alike: its own cookie jar, the password login, Gradio's /config
    and the heartbeat stream the tab holds open (closing it runs the app's unload handler)."""

    def __init__(self, base_url: str, person: Person, rec: Recorder, *, timeout: float,
                 password: str | None) -> None:
        self.base_url = base_url
        self.person = person
        self.rec = rec
        self.timeout = timeout
        self.password = password if password is not None else password_for(person.user)
        self.client = httpx.AsyncClient(base_url=base_url, timeout=timeout,
                                        limits=httpx.Limits(max_connections=6, max_keepalive_connections=6))
        self.session_hash = _session_hash()
        self.profile: Profile | None = None
        self._heartbeat: asyncio.Task | None = None

    async def login(self) -> None:
        try:
            r = await self.client.post("/login", data={"username": self.person.user, "password": self.password})
        except httpx.HTTPError as exc:
            raise EventError("login_" + _kind_of(exc), str(exc)) from None
        if r.status_code != 200:
            raise EventError(f"login_http_{r.status_code}", r.text[:200])

    async def _connect(self, profile: Profile | None, heartbeat: bool) -> None:
        """GET /config (unless a profile read by another tab is given), then open the heartbeat stream."""
        if profile is None:
            r = await self.client.get("/config")
            if r.status_code != 200:
                raise EventError(f"config_http_{r.status_code}", r.text[:200])
            profile = Profile.from_config(r.json())
        self.profile = profile
        if heartbeat:
            self._heartbeat = asyncio.create_task(self._hold_heartbeat())

    async def _hold_heartbeat(self) -> None:
        try:
            async with self.client.stream("GET", f"/gradio_api/heartbeat/{self.session_hash}",
                                          timeout=httpx.Timeout(None, connect=30)) as r:
                async for _ in r.aiter_raw():
                    pass
        except (httpx.HTTPError, asyncio.CancelledError):
            pass

    async def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            try:
                await self._heartbeat
            except BaseException:
                pass
        await self.client.aclose()


class Browser(_Tab):
    """One person's browser tab on the real app: the page load event, then the page's JSON click routes.

    As the page's script does, a click on a record whose successor is
    buffered (and its image preloaded) shows that successor at once; the
    answer's POST goes out in order, one at a time. The simulated person
    clicks again only after the previous answer came back (a real person
    thinking 3 s hardly ever beats it), so the view here is always the
    server's.
    """

    def __init__(self, base_url: str, person: Person, rec: Recorder, *, timeout: float = 30.0,
                 password: str | None = None) -> None:
        super().__init__(base_url, person, rec, timeout=timeout, password=password)
        self.cache: set[str] = set()  # image URLs the browser holds
        self.view: View | None = None
        self._bg: set[asyncio.Task] = set()

    async def open_page(self, profile: Profile | None = None, heartbeat: bool = True) -> View:
        """GET /config, open the heartbeat stream, run the page's load event, show the first image."""
        started = time.monotonic()
        await self._connect(profile, heartbeat)
        self.rec.events["page_load"] += 1
        try:
            status, payload = await self.raw_event("page_load", [])
        except httpx.HTTPError as exc:
            raise EventError(_kind_of(exc), str(exc)) from None
        if status != 200 or not isinstance(payload, dict) or "data" not in payload:
            raise EventError(f"http_{status}", str(payload)[:200])
        view = boot_view(payload["data"])
        if view.state == "signed_out":
            raise EventError("signed_out", view.message or "")
        await self.show(view, started, record_click=False)
        self.rec.page_load.append(time.monotonic() - started)
        if view.state == "ready" and not view.upcoming:  # as the page does: ask once for the buffer
            await asyncio.sleep(0.7)
            view = await self.recheck()
        return view

    async def raw_event(self, api_name: str, data: list[Any]) -> tuple[int, Any]:
        """POST one queue=False Gradio event exactly as the browser does; (HTTP status, JSON body)."""
        assert self.profile is not None
        body = {"data": data, "event_data": None, "fn_index": self.profile.fn[api_name],
                "trigger_id": self.profile.trigger.get(api_name), "session_hash": self.session_hash}
        r = await send(self.client, self.rec, "POST", "/gradio_api/run/predict", json=body)
        return r.status_code, _json(r)

    async def raw_click(self, route: str, body: dict[str, Any]) -> tuple[int, Any]:
        """POST one of the page's click routes (answer, skip, back, next, saved); (HTTP status, JSON body)."""
        r = await send(self.client, self.rec, "POST", f"{CLICK_ROUTE}/{route}", json=body)
        return r.status_code, _json(r)

    async def act(self, route: str, body: dict[str, Any]) -> dict[str, Any]:
        self.rec.events[route.split("?")[0]] += 1
        try:
            status, payload = await self.raw_click(route, body)
        except httpx.HTTPError as exc:
            raise EventError(_kind_of(exc), str(exc)) from None
        if status != 200 or not isinstance(payload, dict):
            message = payload.get("error") if isinstance(payload, dict) else str(payload)[:200]
            raise EventError("signed_out" if status == 401 else f"http_{status}", str(message))
        return payload

    async def fetch_image(self, url: str, *, preload: bool) -> float:
        started = time.monotonic()
        try:
            r = await send(self.client, self.rec, "GET", url)
        except httpx.HTTPError as exc:
            self.rec.error(("preload_" if preload else "image_") + _kind_of(exc))
            return time.monotonic() - started
        took = time.monotonic() - started
        if r.status_code != 200 or not r.content:
            self.rec.error(f"{'preload' if preload else 'image'}_http_{r.status_code}")
            return took
        self.cache.add(url)
        if self.rec.in_window(started):
            (self.rec.preload if preload else self.rec.image).append(took)
        return took

    async def show(self, view: View, click_started: float, *, record_click: bool = True,
                   shown_at: float | None = None) -> None:
        """Render: the main image (unless cached), then the preloads in the background.

        `shown_at`: when the page already showed this record from its buffer (the answer came later).
        """
        self.view = view
        person = self.person
        if view.saved == "saved":
            person.saved_upto = len(person.accepted)
        elif view.saved == "failed":
            person.failed_seen = True
        if view.state == "done" and person.told_done_at is None:
            person.told_done_at = time.monotonic()
        if view.state == "quota" and person.quota_at is None:
            person.quota_at = time.monotonic()
        if view.state == "waiting":
            person.waiting_seen += 1
        click_took = time.monotonic() - click_started
        if shown_at is None:  # the page shows the record once all its images are in
            missing = [url for url in view.images if url not in self.cache]
            await asyncio.gather(*(self.fetch_image(url, preload=False) for url in missing))
        if record_click and self.rec.in_window(click_started):
            self.rec.click.append(click_took)
            self.rec.click_at.append(click_started)
            self.rec.click_to_next.append((shown_at or time.monotonic()) - click_started)
        for url in view.preload:
            if url not in self.cache:
                self.cache.add(url)  # the browser starts one request per URL
                task = asyncio.create_task(self.fetch_image(url, preload=True))
                self._bg.add(task)
                task.add_done_callback(self._bg.discard)

    async def click_label(self, label_index: int, comment: str = "", answer: dict[str, Any] | None = None) -> View:
        """Press a label button: answer the record on screen; returns the next view. `answer`: send this
        object (a value per question) instead of the label."""
        assert self.view is not None and self.view.state == "ready"
        shown = self.view
        label = self.profile.labels[label_index] if self.profile and self.profile.labels else str(label_index)
        started = time.monotonic()
        # the page's rule: swap at once when the next record is buffered and there is no comment to check
        ahead = bool(shown.upcoming) and not comment
        shown_at = started if ahead else None
        retries = self.rec.events["retry_after_dropped_connection"]
        try:
            # the page's last queued answer, with the next record already on screen, asks its reply to
            # wait for the commit (annotator.ui.clicks); an answer the person waits for does not
            data = await self.act("answer?saved=wait" if ahead else "answer",
                                  {"ticket": shown.ticket, "answer": [label] if answer is None else answer,
                                   "comment": comment})
        except EventError as exc:
            if self.rec.in_window(started):
                self.rec.error("click_" + exc.kind)
            raise
        view = view_of(data)
        if ahead and view.record_id != shown.upcoming[0]["record_id"]:
            self.rec.events["swapped_to_another_record"] += 1  # the page corrects itself to the server's record
            shown_at = None
        replay = bool(view.message and "already recorded" in view.message)
        # a late answer past the person's quota is refused with the quota view (gold.quota_late_message)
        refused = bool(view.message and "not saved" in view.message)
        retried = self.rec.events["retry_after_dropped_connection"] > retries  # the first try may have counted
        if shown.record_id is not None and not refused and (not replay or retried):
            self.person.accepted.append(Answer(self.person.user, shown.record_id, label, comment.strip(),
                                               time.monotonic(), started, answer))
        if view.saved == "saved" and len(self.person.accepted) > self.person.saved_upto \
                and self.rec.in_window(started):
            self.rec.answer_to_saved.append(time.monotonic() - started)
        await self.show(view, started, shown_at=shown_at)
        return view

    async def recheck(self) -> View:
        started = time.monotonic()
        view = view_of(await self.act("next", {}))
        await self.show(view, started, record_click=False)
        return view

    async def check_saved(self) -> str:
        """The page's deferred "check saved" request; updates what the person was told."""
        upto = len(self.person.accepted)
        started = time.monotonic()
        try:
            data = await self.act("saved", {})
        except EventError as exc:
            if self.rec.in_window(started):
                self.rec.error("saved_" + exc.kind)
            return "error"
        if self.rec.in_window(started):
            self.rec.saved_check.append(time.monotonic() - started)
        kind = saved_kind(data)
        if kind == "saved":
            if upto > self.person.saved_upto and self.rec.in_window(started):
                self.rec.answer_to_saved.append(time.monotonic() - self.person.accepted[upto - 1].pressed)
            self.person.saved_upto = max(self.person.saved_upto, upto)
        elif kind == "failed":
            self.person.failed_seen = True
        return kind

    async def close(self) -> None:
        for task in list(self._bg):
            task.cancel()
        await super().close()

# --- a browser tab for the baseline ------------------------------------------------

_RECORD = re.compile(r"Record (\d+)")


class BaselineBrowser(_Tab):
    """One person's tab on bench/baseline_app.py: queued events over queue/join + the SSE stream."""

    def __init__(self, base_url: str, person: Person, rec: Recorder, *, timeout: float = 60.0,
                 password: str | None = None) -> None:
        super().__init__(base_url, person, rec, timeout=timeout, password=password)
        self.record_id: int | None = None
        self.image_url: str | None = None
        self.done = False

    async def open_page(self, profile: Profile | None = None, heartbeat: bool = True) -> None:
        started = time.monotonic()
        await self._connect(profile, heartbeat)
        out = await self.event("load", [])
        await self._show(out)
        self.rec.page_load.append(time.monotonic() - started)

    async def event(self, api_name: str, data: list[Any]) -> list[Any]:
        assert self.profile is not None
        self.rec.events[api_name] += 1
        body = {"data": data, "event_data": None, "fn_index": self.profile.fn[api_name],
                "trigger_id": self.profile.trigger.get(api_name), "session_hash": self.session_hash}
        try:
            r = await send(self.client, self.rec, "POST", "/gradio_api/queue/join", json=body)
            if r.status_code != 200:
                raise EventError(f"http_{r.status_code}", r.text[:200])
            event_id = r.json()["event_id"]
            async with self.client.stream("GET", "/gradio_api/queue/data",
                                          params={"session_hash": self.session_hash}) as s:
                if s.status_code != 200:
                    raise EventError(f"http_{s.status_code}")
                async for line in s.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    msg = json.loads(line[5:])
                    if msg.get("event_id") not in (None, event_id):
                        continue
                    kind = msg.get("msg")
                    if kind == "process_completed":
                        if not msg.get("success", True) or "error" in (msg.get("output") or {}):
                            raise EventError("app_error", str((msg.get("output") or {}).get("error")))
                        return msg["output"]["data"]
                    if kind in ("unexpected_error", "close_stream"):
                        raise EventError(kind, str(msg.get("message", "")))
        except httpx.HTTPError as exc:
            raise EventError(_kind_of(exc), str(exc)) from None
        raise EventError("stream_ended")

    async def _show(self, out: list[Any]) -> None:
        image, _state, progress = out[0], out[1], out[2]
        text = progress if isinstance(progress, str) else (progress or {}).get("value", "") if isinstance(progress, dict) else ""
        match = _RECORD.search(text or "")
        self.record_id = int(match.group(1)) if match else None
        url = image.get("url") if isinstance(image, dict) else None
        self.image_url = url
        if self.record_id is None:
            self.done = True
            if self.person.told_done_at is None and "All done" in (text or ""):
                self.person.told_done_at = time.monotonic()

    async def fetch_image(self) -> None:
        if not self.image_url:
            return
        started = time.monotonic()
        try:
            r = await send(self.client, self.rec, "GET", self.image_url)
            ok = r.status_code == 200 and bool(r.content)
            if not ok:
                self.rec.error(f"image_http_{r.status_code}")
        except httpx.HTTPError as exc:
            self.rec.error("image_" + _kind_of(exc))
            return
        if ok and self.rec.in_window(started):
            self.rec.image.append(time.monotonic() - started)

    async def click_label(self, label_index: int, comment: str = "") -> None:
        assert self.profile is not None and self.record_id is not None
        label = self.profile.labels[label_index]
        shown = self.record_id
        started = time.monotonic()
        try:
            out = await self.event("submit", [label, comment, None])
        except EventError as exc:
            if self.rec.in_window(started):
                self.rec.error("click_" + exc.kind)
            raise
        took = time.monotonic() - started
        # committed inside the handler: accepted means saved
        self.person.accepted.append(Answer(self.person.user, shown, label, comment.strip(), time.monotonic()))
        self.person.saved_upto = len(self.person.accepted)
        await self._show(out)
        await self.fetch_image()
        if self.rec.in_window(started):
            self.rec.click.append(took)
            self.rec.click_at.append(started)
            self.rec.click_to_next.append(time.monotonic() - started)


# --- the store ---------------------------------------------------------------------


def _our_facts(query: Callable[..., list[tuple]], overlap: int, gold: set[int]
               ) -> tuple[dict, int, set[int], int, Counter]:
    """(answers by (record, user), records over overlap, open records, records, answers on work by user) from
    our schema. Gold records (`gold`) are no work: no overlap, no completion (docs/quality.md)."""
    rows = query("SELECT record_id, user_id, status, answer FROM responses")
    got = {(r, u): (s, decode_answer(a)) for r, u, s, a in rows}
    over = query("SELECT s.record_id FROM (SELECT record_id, count(*) AS n FROM responses WHERE status = "
                 "'submitted' GROUP BY 1) s JOIN records r ON r.id = s.record_id WHERE s.n > ? + r.extra_answers",
                 [overlap])
    open_records = query(
        "SELECT r.id FROM records r LEFT JOIN (SELECT record_id, count(*) AS n FROM responses "
        "WHERE status = 'submitted' GROUP BY 1) s ON s.record_id = r.id "
        "WHERE coalesce(s.n, 0) < ? + r.extra_answers", [overlap])
    work = Counter(u for (r, u), (status, _) in got.items() if status == "submitted" and r not in gold)
    return (got, sum(1 for (r,) in over if r not in gold), {r for (r,) in open_records} - gold,
            query("SELECT count(*) FROM records")[0][0], work)


def gold_ids(query: Callable[..., list[tuple]], task: Any) -> set[int]:
    """The records a DuckDB app holds as gold (it keeps them in its scheduler, not in a column): as
    annotator.gold.gold_answers finds them, by the gold file's source keys and the gold column."""
    quality = task.quality
    keys: set[str] = set()
    if quality.gold_file:
        with open(quality.gold_file, encoding="utf-8") as f:
            keys = {json.loads(line)["key"] for line in f if line.strip()}
    column = quality.gold_column
    out = set()
    for rid, key, metadata in query("SELECT id, source_key, metadata FROM records"):
        value = json.loads(metadata or "{}").get(column) if column else None
        if key in keys or value not in (None, "", []):
            out.add(rid)
    return out


def check_store(kind: str, data_dir: Path, persons: list[Person], overlap: int,
                store_url: str | None = None, task: Any = None) -> dict[str, Any]:
    """After the server stopped: over-overlap records, missing answers, false "done", people over the quota.

    Ours reads its DuckDB file in `data_dir`, or PostgreSQL at `store_url`. `task` (annotator.task.TaskSpec):
    its gold records are left out of the overlap and completion checks, and its quota is checked."""
    import duckdb  # noqa: PLC0415

    gold: set[int] = set()
    work: Counter = Counter()
    if store_url:
        import psycopg  # noqa: PLC0415

        with psycopg.connect(store_url) as pg:
            gold = {r for (r,) in pg.execute("SELECT id FROM records WHERE gold").fetchall()}
            got, over, open_ids, records, work = _our_facts(
                lambda sql, params=(): pg.execute(sql.replace("?", "%s"), params).fetchall(), overlap, gold)
    elif kind == "ours":
        con = duckdb.connect(str(data_dir / "annotator.duckdb"), read_only=True)
        query = lambda sql, params=(): con.execute(sql, params).fetchall()  # noqa: E731
        gold = gold_ids(query, task) if task is not None and task.quality.has_gold else set()
        got, over, open_ids, records, work = _our_facts(query, overlap, gold)
        con.close()
    else:
        con = duckdb.connect(str(data_dir / "baseline.duckdb"), read_only=True)
        rows = con.execute("SELECT record_id, user_id, label FROM annotations").fetchall()
        got = {(r, u): ("submitted", {"label": label}) for r, u, label in rows}
        over = con.execute("SELECT count(*) FROM (SELECT record_id, count(*) AS n FROM annotations GROUP BY 1) "
                           "WHERE n > ?", [overlap]).fetchone()[0]
        open_records = con.execute(
            "SELECT r.id FROM records r LEFT JOIN (SELECT record_id, count(*) AS n FROM annotations GROUP BY 1) s "
            "ON s.record_id = r.id WHERE coalesce(s.n, 0) < ?", [overlap]).fetchall()
        open_ids = {r for (r,) in open_records}
        records = con.execute("SELECT count(*) FROM records").fetchone()[0]
        con.close()
    quota = task.quality.max_answers_per_person if task is not None else None

    def missing(answers: list[Answer]) -> int:
        last: dict[tuple[int, str], Answer] = {}
        for a in answers:
            last[(a.record_id, a.user)] = a
        return sum(1 for key, a in last.items()
                   if got.get(key) is None or not a.held_in(got[key][1]))

    accepted = [a for p in persons for a in p.accepted]
    saved = [a for p in persons for a in p.accepted[:p.saved_upto]]
    acked_keys = {(a.record_id, a.user) for a in accepted}
    false_done = 0
    for p in persons:
        if p.told_done_at is None:
            continue
        mine = {r for (r, u) in got if u == p.user}
        if open_ids - mine:
            false_done += 1
    return {
        "records": records,
        "gold_records": len(gold),
        "gold_answers": sum(1 for (r, _), (status, _) in got.items() if r in gold and status == "submitted"),
        "at_quota": sum(1 for p in persons if p.quota_at is not None),
        "over_quota": sum(1 for n in work.values() if n > quota) if quota is not None else 0,
        "answers_in_store": len(got),
        "accepted": len(accepted),
        "reported_saved": len(saved),
        "over_overlap": over,
        "accepted_missing": missing(accepted),
        "saved_missing": missing(saved),
        "unacknowledged_in_store": sum(1 for key in got if key not in acked_keys),
        "told_done": sum(1 for p in persons if p.told_done_at is not None),
        "false_done": false_done,
    }


# --- statistics ------------------------------------------------------------------


def pct(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of seconds, in milliseconds."""
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(-(-p * len(ordered) // 100)) - 1))
    return round(ordered[k] * 1000, 1)


def comment_for(rng: random.Random, rate: float = 0.05) -> str:
    return f"note {secrets.token_hex(3)}" if rng.random() < rate else ""


def which(cmd: str) -> str | None:
    return shutil.which(cmd)
