"""The edge: every rule about who may call which route, from where, with how large a body.

A Space is public, its people are signed in while they browse other sites,
and Gradio reflects any Origin with credentials. So every request passes
here before Gradio sees it. `SURFACE` is the whole public surface at a
glance; two pure-ASGI layers apply it (pure ASGI, so event streams are not
buffered):

- `Edge`, around the whole app: refuses closed routes, Gradio's download
  proxy, cross-site requests and preflights, and bodies over the route's
  limit (from Content-Length, and by counting a streamed body) before any
  handler reads a byte.
- `PersonCheck`, inside Gradio's app (where its session middleware has
  already read the cookie): the person's identity and role, and their
  request budget, before the body is read.

`PersonSlots` keeps work that no cookie budgets (an image link needs no
cookie) to a few threads per person: the image route's renders and reads.

Cross-site policy (Fetch Metadata, with Origin/Referer for browsers that do
not send it): a browser request is served when it is same-origin or typed
by the person (`Sec-Fetch-Site: same-origin|none`); another site may only
navigate (GET, `Sec-Fetch-Mode: navigate`) to the routes marked
`navigate`: the page (the Hub frames it from huggingface.co) and sign-in
(the OAuth callback arrives from huggingface.co). Requests with neither
Origin nor `Sec-Fetch-*` (gradio_client, curl) carry no one else's
cookies and are served, with their own session or password.

What is trusted: the app's own origin is the request's Host (or the
proxy's X-Forwarded-Host) with the scheme of X-Forwarded-Proto (else the
connection's). A browser never lets a page set these, so a page on another
site cannot make its Origin match them; a client that forges them has only
its own cookies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any, AsyncIterator, Awaitable, Callable, Literal, MutableMapping
from urllib.parse import unquote, urlsplit

from starlette.requests import Request

from annotator.auth import AuthError, Identity
from annotator.ui.gradio_glue import add_inner_middleware

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

Who = Literal["anyone", "signed-in", "admin", "nobody"]

KB = 1024
UPLOAD_MAX_BYTES = 10 * KB * KB  # the app asks nobody to upload; an admin's script may send a file this large


@dataclass(frozen=True)
class Rule:
    """How one route (or a family of routes) may be called."""

    path: str         # exact path, or a prefix when it ends with "*"
    who: Who          # "anyone": the handler checks identity itself (Gradio's events, the page)
    max_body: int     # bytes, checked before the body is read
    navigate: bool = False  # another site may open it as a page or frame (GET navigation)
    budget: bool = False    # each call spends from the person's request budget
    why: str = ""


SURFACE: tuple[Rule, ...] = (
    Rule("/", "anyone", 0, navigate=True, why="the page; the Hub frames it from huggingface.co"),
    Rule("/login*", "anyone", 16 * KB, navigate=True,
         why="sign-in: the password form, the OAuth start and its callback from huggingface.co"),
    Rule("/logout*", "anyone", 0, why="sign-out, only from the app's own page"),
    Rule("/ann/*", "signed-in", 64 * KB, budget=True,
         why="the page's clicks: a ticket, the answer (a text at the default max_chars is 8 KB at most), a comment"),
    Rule("/img/*", "anyone", 0, why="images, display and zoomed (/large), signed per person (the route checks it)"),
    Rule("/ann-static/*", "anyone", 0,
         why="the page's script and style by content-versioned name (annotator/ui/assets.py); nothing else"),
    Rule("/healthz", "anyone", 0, why="ok or not; the details for admins"),
    Rule("/projector", "anyone", 0, navigate=True,
         why="the room's screen: a page with no data in it (annotator/ui/projector.py); a link may open it"),
    Rule("/projector/data", "signed-in", 0, budget=True,
         why="the room's screen's numbers, for everyone signed in as the dashboard's team view; one shared "
             "computation every few seconds"),
    Rule("/gradio_api/queue/join", "anyone", 256 * KB, why="Gradio's events; each handler checks the person"),
    Rule("/gradio_api/call/*", "anyone", 256 * KB, why="named endpoints for scripts (gradio_client)"),
    Rule("/gradio_api/run/*", "anyone", 256 * KB, why="the page's queue=False events"),
    Rule("/gradio_api/api/*", "anyone", 256 * KB, why="named endpoints, Gradio's older path"),
    Rule("/gradio_api/upload", "admin", UPLOAD_MAX_BYTES, why="the app never asks anyone to upload"),
    Rule("/gradio_api/file=*", "anyone", 0, why="files Gradio serves (admin downloads); URLs are refused"),
    Rule("/gradio_api/file/*", "anyone", 0, why="the same, Gradio's other path"),
    Rule("/gradio_api/token*", "anyone", 0, why="the password session's token: same-origin only"),
    Rule("/gradio_api/proxy=*", "nobody", 0, why="Gradio's proxy to other Spaces: unused"),
    Rule("/monitoring*", "nobody", 0, why="Gradio's monitoring: also off on mount"),
    Rule("/gradio_api/monitoring*", "nobody", 0, why="the same, under the API prefix"),
    Rule("/gradio_api/vibe-*", "nobody", 0, why="Gradio's code editor: never for a Space's visitors"),
    Rule("/gradio_api/undo-vibe-edit*", "nobody", 0, why="the same"),
    Rule("/gradio_api/dev/*", "nobody", 0, why="Gradio's reload mode"),
    Rule("/gradio_api/run-history/*", "nobody", 0, why="Gradio's run history: unused"),
    Rule("*", "anyone", 64 * KB, why="everything else of Gradio's: the page's assets, config, event streams"),
)


class Surface:
    """Finds the rule for a path: exact paths first, then the longest matching prefix."""

    def __init__(self, rules: tuple[Rule, ...] = SURFACE) -> None:
        self.exact = {r.path: r for r in rules if not r.path.endswith("*")}
        self.prefixes = sorted((r for r in rules if r.path.endswith("*") and r.path != "*"),
                               key=lambda r: -len(r.path))
        self.default = next(r for r in rules if r.path == "*")

    def rule(self, path: str) -> Rule:
        path = _SLASHES.sub("/", path)
        rule = self.exact.get(path)
        if rule is not None:
            return rule
        lowered = path.lower()
        for r in self.prefixes:
            if lowered.startswith(r.path[:-1]):
                return r
        return self.default


# the routes whose body carries an answer (the page's clicks, Gradio's events and the scripting API)
ANSWER_ROUTES = frozenset({"/ann/*", "/gradio_api/queue/join", "/gradio_api/call/*", "/gradio_api/run/*",
                           "/gradio_api/api/*"})
# what such a request holds besides the answer and the comment: a ticket, names, Gradio's event fields
REQUEST_ROOM = 16 * KB


def surface_for(answer_bytes: int) -> Surface:
    """The public surface with the routes that carry an answer allowing one of `answer_bytes` (the largest
    valid answer and comment the task and settings admit): a long caption or hundreds of boxes are a
    person's work, never a request too large."""
    need = answer_bytes + REQUEST_ROOM
    return Surface(tuple(replace(r, max_body=max(r.max_body, need)) if r.path in ANSWER_ROUTES else r
                         for r in SURFACE))


_SLASHES = re.compile("/{2,}")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.\-]*:")


def is_url(target: str) -> bool:
    """Whether a `/file=` target names something elsewhere: any scheme, `//host`, in any percent-encoding."""
    for _ in range(5):  # %25-encoded again and again: undo it all
        decoded = unquote(target)
        if decoded == target:
            break
        target = decoded
    else:
        return True  # still encoded after five rounds: no file of Gradio's is named like that
    t = "".join(c for c in target if c > " ").replace("\\", "/").lower()  # browsers drop controls, treat \ as /
    return t.startswith("//") or "://" in t or bool(_SCHEME.match(t))


def _file_target(path: str) -> str | None:
    for marker in ("/gradio_api/file=", "/gradio_api/file/"):
        at = path.find(marker)
        if at >= 0:
            return path[at + len(marker):]
    return None


def _origin_of(url: str) -> tuple[str, str]:
    """(scheme, host[:port]) with the default port dropped, lowercased; ("", "") if it is no URL."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return "", ""
    if not parts.scheme or not host:
        return "", ""
    scheme = parts.scheme.lower()
    netloc = host if port is None or (scheme, port) in (("http", 80), ("https", 443)) else f"{host}:{port}"
    return scheme, netloc


def own_origins(scope: Scope, headers: dict[str, str]) -> set[tuple[str, str]]:
    """The origins this request was sent to: its Host, or the proxy's X-Forwarded-Host, with its scheme."""
    scheme = headers.get("x-forwarded-proto", "").split(",")[0].strip().lower() or scope.get("scheme", "http")
    hosts = {headers.get("host", "")}
    forwarded = headers.get("x-forwarded-host", "").split(",")[0].strip()
    if forwarded:
        hosts.add(forwarded)
    return {_origin_of(f"{scheme}://{h}") for h in hosts if h}


def cross_site_reason(scope: Scope, headers: dict[str, str], rule: Rule) -> str | None:
    """Why a request from a browser on another site is refused here, or None when it may pass."""
    method = scope["method"]
    navigation = method in ("GET", "HEAD") and rule.navigate
    site = headers.get("sec-fetch-site")
    if site is not None:
        if site in ("same-origin", "none"):
            return None
        if navigation and headers.get("sec-fetch-mode") == "navigate":
            return None
        return f"it came from a page on another site (Sec-Fetch-Site: {site})"
    # no Fetch Metadata: an older browser (or plain http to a remote host), or a script
    origin = headers.get("origin")
    source = origin if origin is not None else (None if navigation else headers.get("referer"))
    if source is None:
        return None  # gradio_client, curl: no one else's cookies
    if _origin_of(source) in own_origins(scope, headers):
        return None
    return f"it came from a page on another site ({source[:100]!r})"


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", ())}


async def refuse(send: Send, status: int, message: str, extra: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    """A JSON refusal `{"error": message}`: the page shows `error`, scripts read it."""
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"cache-control", b"no-store"), *extra]})
    await send({"type": "http.response.body", "body": body})


def _too_large(limit: int) -> str:
    return f"That request is larger than this address accepts ({limit // KB} KB); reload the page."


class Edge:
    """The outer layer (around the whole app): closed routes, the download proxy, cross-site, body size."""

    def __init__(self, app: ASGIApp, surface: Surface | None = None) -> None:
        self.app = app
        self.surface = surface or Surface()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":  # the app has none; refuse other sites' just the same
            rule = self.surface.rule(scope["path"])
            headers = _headers(scope)
            if rule.who == "nobody" or cross_site_reason({**scope, "method": "GET"}, headers, rule):
                await send({"type": "websocket.close", "code": 1008})
                return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        rule = self.surface.rule(path)
        if rule.who == "nobody":
            await refuse(send, 404, "This address is not part of the app.")
            return
        target = _file_target(path)
        if target is not None and is_url(target):
            await refuse(send, 403, "This app serves only its own files, never other addresses.")
            return
        headers = _headers(scope)
        if scope["method"] == "OPTIONS" and "origin" in headers:
            # a preflight: only another origin sends one (the app's own page never needs it); no CORS grant
            await refuse(send, 403, "This app accepts requests only from its own pages.")
            return
        reason = cross_site_reason(scope, headers, rule)
        if reason is not None:
            await refuse(send, 403, f"Refused because {reason}: the app accepts requests only from its own "
                                    f"pages. Open the app's address directly.")
            return
        length = headers.get("content-length")
        if length is not None:
            if not (length.isascii() and length.isdigit()):
                await refuse(send, 400, "The request's Content-Length is not a number.")
                return
            if int(length) > rule.max_body:
                await refuse(send, 413, _too_large(rule.max_body))
                return
            await self.app(scope, receive, send)  # the server delivers no more than Content-Length says
            return
        if scope["method"] in ("GET", "HEAD", "DELETE", "OPTIONS") and "transfer-encoding" not in headers:
            await self.app(scope, receive, send)
            return
        capped = _CappedBody(receive, send, rule.max_body)
        try:
            await self.app(scope, capped.receive, capped.send)
        except Exception:
            if not capped.refused:
                raise
            # the app failed only because its body was cut off (it was told the client left): already answered


class _CappedBody:
    """receive/send for a body of unknown length: past `limit` bytes, answer 413 and end the body there.

    The app is told the client left (raising from receive would make FastAPI answer 400); anything
    it sends after the 413 is dropped. Not meant to be used directly (see Edge).
    """

    def __init__(self, receive: Receive, send: Send, limit: int) -> None:
        self._receive, self._send, self.limit = receive, send, limit
        self.seen = 0
        self.started = self.refused = False

    async def receive(self) -> Message:
        if self.refused:
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            if self.seen > self.limit:
                self.refused = True
                if not self.started:
                    await refuse(self._send, 413, _too_large(self.limit))
                return {"type": "http.disconnect"}
        return message

    async def send(self, message: Message) -> None:
        if self.refused:
            return
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)


class Budget:
    """A token bucket per person: `burst` calls at once, then `rate` a second; bounded memory.

    Sized for the fastest honest annotator: the page sends one call per key press (plus one saved
    check after a pause), so a burst of ~20 keys, or a tab that was offline sending its ~40 kept
    answers one at a time, fits in `burst`; the fault drills' people (an answer every 0.1 s) stay
    under `rate`. A script flooding in one person's name is held to `rate`. At most `max_people`
    buckets are kept; a full bucket is the same as none, so the ones idle longest are dropped first.
    """

    def __init__(self, rate: float = 20.0, burst: float = 60.0, max_people: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.max_people, self.clock = rate, burst, max_people, clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # name -> (tokens, at)

    def spend(self, name: str) -> float:
        """Spend one call: 0.0 when allowed, else the seconds until the next call would be."""
        now = self.clock()
        tokens, at = self._buckets.pop(name, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[name] = (tokens, now)  # most recently used last
        while len(self._buckets) > self.max_people:
            self._buckets.popitem(last=False)
        return wait

    def __len__(self) -> int:
        return len(self._buckets)


class SlotsFull(Exception):
    """One person already has `PersonSlots.running + waiting` requests of this kind in flight."""


class PersonSlots:
    """At most `running` of one person's requests of a kind in the work threads at once, up to `waiting` more
    queued on the event loop (cheap), the rest refused (SlotsFull).

    For work that cannot be budgeted by the session cookie: an image link works without cookies, and one
    person's flood of their own valid links to images no longer in memory costs a store read and a file
    read each, in the thread pool the clicks of everyone else use. Honest pages stay far below: a page
    preloads at most its buffered records' images, nearly all of them rendered already. Memory holds only
    the people with a request in flight.
    """

    def __init__(self, running: int = 2, waiting: int = 64) -> None:
        self.running, self.waiting = running, waiting
        self._in_flight: dict[str, tuple[asyncio.Semaphore, int]] = {}

    @contextlib.asynccontextmanager
    async def slot(self, name: str) -> AsyncIterator[None]:
        gate, count = self._in_flight.get(name, (None, 0))
        if count >= self.running + self.waiting:
            raise SlotsFull()
        gate = gate or asyncio.Semaphore(self.running)
        self._in_flight[name] = (gate, count + 1)
        try:
            async with gate:
                yield
        finally:
            left = self._in_flight[name][1] - 1
            if left:
                self._in_flight[name] = (gate, left)
            else:
                del self._in_flight[name]

    def __len__(self) -> int:
        return len(self._in_flight)


def check_people(gradio_app: Any, who: Callable[[Request], Identity], budget: Budget) -> None:
    """Check the person wherever the rule names one, inside Gradio's app, before the body is read.

    Placed innermost among Gradio's middleware, after its session middleware has read the OAuth
    cookie, so `who` sees the same identity the handlers do. Call before the app serves anything.
    """
    add_inner_middleware(gradio_app, PersonCheck, who=who, budget=budget)


class PersonCheck:
    """The inner layer: identity, role and request budget on the routes whose rule asks for them."""

    # An over-budget request is answered (429) only after this long, so a script sending back to back
    # makes a few requests a second instead of thousands, each of which would cost the server as much
    # as a click: a flood in one name must not cost the crowd CPU. At most MAX_HELD of one person's
    # requests are held at once; more are refused at once. Honest people never reach the budget.
    HOLD_S = 1.0
    MAX_HELD = 8
    LOG_EVERY_S = 10.0  # one log line per flooding person and interval, not one per refused request

    def __init__(self, app: ASGIApp, who: Callable[[Request], Identity], budget: Budget,
                 surface: Surface | None = None) -> None:
        self.app, self.who, self.budget = app, who, budget
        self.surface = surface or Surface()
        self._held: dict[str, int] = {}
        self._refused: dict[str, tuple[float, int]] = {}  # name -> (last logged, refused since)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rule = self.surface.rule(scope["path"])
        if rule.who == "anyone" and not rule.budget:
            await self.app(scope, receive, send)
            return
        try:
            person = self.who(Request(scope))
        except AuthError as exc:
            await refuse(send, 401, str(exc))
            return
        if rule.who == "admin" and not person.is_admin:
            await refuse(send, 403, f"{person.name} is not an admin of this Space; admins are named in ADMINS.")
            return
        if rule.budget:
            wait = self.budget.spend(person.name)
            if wait > 0:
                seconds = max(1, round(wait + 0.5))
                await self._hold(person.name, scope["path"])
                await refuse(send, 429, f"Too many requests from {person.name} at once; wait {seconds} s, "
                                        f"then go on.", ((b"retry-after", str(seconds).encode()),))
                return
        await self.app(scope, receive, send)

    async def _hold(self, name: str, path: str) -> None:
        """Hold an over-budget request for HOLD_S (see there) unless MAX_HELD of this person's already are."""
        now = time.monotonic()
        logged, count = self._refused.get(name, (0.0, 0))
        if now - logged >= self.LOG_EVERY_S:
            log.info("request budget: %s refused %d more request(s), the latest on %s", name, count + 1, path)
            logged, count = now, 0
        else:
            count += 1
        self._refused[name] = (logged, count)
        if len(self._refused) > self.budget.max_people:
            self._refused.pop(next(iter(self._refused)))
        if self._held.get(name, 0) >= self.MAX_HELD:
            return
        self._held[name] = self._held.get(name, 0) + 1
        try:
            await asyncio.sleep(self.HOLD_S)
        finally:
            self._held[name] -= 1
            if not self._held[name]:
                del self._held[name]
