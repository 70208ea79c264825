"""Crowd benchmark: N simulated annotators against the app and the baseline, in one run.

    python bench/crowd.py --annotators 200 --think 3 --ramp 20 --duration 60 --json crowd-200.json

For each app (`--app ours|baseline|both`) it generates the inputs (a folder
of small JPEGs, a task file, a password file with one user per annotator),
starts the server on a fresh DATA_DIR with an emulated storage commit delay
(`--commit-delay-ms`, an LD_PRELOAD shim adding that delay to every
fsync/fdatasync of the server process, see bench/slowsync.py), logs every
user in, then ramps the annotators up over `--ramp` seconds and measures
the next `--duration` seconds. Each annotator is an asyncio task with its
own httpx client (cookies, keep-alive), sending what a browser sends for a
click and its images (see bench/loadgen.py), thinking an exponentially
distributed time with mean `--think` between clicks.

Reported, printed and written as JSON (`--json`):
- click p50/p95/p99 (the click's POST until its answer), click-to-next (plus
  the main image when it was not already preloaded), image fetch p50/p99
  (main images on the click path and preloads counted separately);
- annotations per second, server CPU ms per annotation (the server
  process's own user+system time over the window, divided by the answers
  accepted in it), server peak RSS (VmHWM), load-generator CPU and event
  loop lag (a saturated client shows up there), errors by kind;
- after a clean stop, from the store: records over their overlap, accepted
  answers missing, answers the page had reported saved that are missing,
  people told "done" while a record they could still annotate remained.
Then the ratios ours / baseline.

`--flood login|person` runs ours a second time with the same crowd and a
flood beside it through the measured window (bench/floods.py: wrong
passwords at `--flood-rate` a second, or one signed-in person clicking back
to back), and reports the crowd's click p99 against the run without it.

`--projectors N` runs ours a second time with the same crowd and N projector
screens beside it through the run (each polls /projector/data every 10 s, as
annotator/ui/static/projector.js does, as a signed-in person; LEADERBOARD=on
and a GOAL, so the leaderboard is computed too), and reports server CPU per
annotation with 0 and N screens (issue 17: at most +0.2 ms for five). On a
shared machine that difference is within the runs' noise, so it also
measures, on the server the crowd just left (its store full), the CPU of a
poll that computes the view and of one served from the shared computation,
and models the screens' cost per annotation from them (one computation per
10 s plus N polls, over the run's annotations a second).

`--task PATH` runs ours against that task file instead of the one-label
task (e.g. examples/questions/task.toml: four questions of four kinds); the
annotators read its questions from the app's `next` API and answer every one
(bench/crowd_task.py); the overlap is the task's; `--source DIR` is its
SOURCE_DIR (default: the generated JPEGs). Gold records (the task's
gold_file/gold_column) are left out of the overlap and "done" checks, and a
person at the task's quota leaves (not a false "done"; "over quota" counts
anyone the store holds past it). The baseline knows one label question only,
so `--task` takes `--app ours`. `bench/crowd_kinds.py` runs every kind in one go.

`--breakdown` adds, on the idle server after the crowd left, the server CPU
and latency of single requests: a plain route (/healthz), a queue=False Gradio
event (the page load), the saved check and the click on the page's JSON
routes, an image, and the baseline's queued click.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import crowd_task  # noqa: E402
import floods  # noqa: E402
import loadgen  # noqa: E402
from annotator.task import load_task  # noqa: E402
from annotator.ui.annotate import SAVED_CHECK_DELAY_MS  # noqa: E402  (what the page does)
from annotator.ui.projector import REFRESH_SECONDS as PROJECTOR_EVERY_S  # noqa: E402  (what projector.js does)
from loadgen import (Answer, BaselineBrowser, Browser, EventError, Person, Profile, Recorder,  # noqa: E402
                     pct)

LABELS = ["cat", "dog", "bird", "other"]


# --- setup -------------------------------------------------------------------------


def server_env(kind: str, args: argparse.Namespace, run: Path, source: Path, users: list[str],
               folder: Path, edge: bool = True) -> dict[str, str]:
    import slowsync

    base = slowsync.env(args.commit_delay_ms)
    data = folder / "data"
    env = {**base, "DATA_DIR": str(data), "GRADIO_TEMP_DIR": str(folder / "gradio-tmp"),
           "SOURCE_DIR": str(source), "LOG_LEVEL": "WARNING"}
    site_code = (PROFILE_SITE if args.profile_server else "") + ("" if edge else NO_EDGE_SITE)
    if site_code:
        site = folder / "server-site"
        site.mkdir(parents=True, exist_ok=True)
        (site / "sitecustomize.py").write_text(site_code)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH", "")]))
    if args.profile_server:
        env["CROWD_PROFILE"] = str(folder / "server-profile.json")
    if kind == "ours":
        task = args.task.resolve() if args.task else loadgen.write_task(folder / "task.toml", LABELS, args.overlap)
        passwords = loadgen.write_password_file(folder / "passwords.json", users + ["probe0000"])
        env.update({"CACHE_DIR": str(folder / "cache"), "TASK_FILE": str(task), "AUTH_MODE": "password",
                    "PASSWORD_FILE": str(passwords)})
    else:
        plain = {u: loadgen.password_for(u) for u in users + ["probe0000"]}
        (folder / "passwords.json").write_text(json.dumps(plain))
        env.update({"OVERLAP": str(args.overlap), "LABELS": ",".join(LABELS),
                    "PASSWORD_FILE": str(folder / "passwords.json")})
    return env


# --- optional: our server without its edge (--without-edge) ------------------------------

NO_EDGE_SITE = r"""
# Written by bench/crowd.py --without-edge: loaded by the server through PYTHONPATH (sitecustomize).
# The edge (annotator/ui/edge.py) becomes a pass-through and no person check is installed, to measure
# what the edge costs per request. A benchmark's server only: never run a real one like this.
import sys as _sys
_sys.path.insert(0, %r)
import annotator.ui.edge as _edge


async def _pass_through(self, scope, receive, send):
    await self.app(scope, receive, send)


_edge.Edge.__call__ = _pass_through
_edge.check_people = lambda *args, **kwargs: None
""" % str(Path(__file__).resolve().parent.parent)


# --- optional in-server profile (--profile-server) --------------------------------------

PROFILE_SITE = r"""
# Written by bench/crowd.py --profile-server: loaded by the server through PYTHONPATH (sitecustomize).
# Every second: CPU time per thread, grouped by thread name; plus every garbage-collector pause.
import gc, json, os, re, sys, threading, time
_out = os.environ.get("CROWD_PROFILE")
if _out and sys.argv and sys.argv[0].endswith("app.py"):
    import psutil
    _proc = psutil.Process()
    _cpu, _last, _gc, _t0 = {}, {}, {"count": {}, "ms": {}, "max_ms": 0.0}, {}
    def _group(name):
        return re.sub(r"[_-]?\d+$", "", name) or name
    def _cb(phase, info):
        if phase == "start":
            _t0["t"] = time.perf_counter()
        elif "t" in _t0:
            ms = (time.perf_counter() - _t0.pop("t")) * 1000
            g = "gen%d" % info["generation"]
            _gc["count"][g] = _gc["count"].get(g, 0) + 1
            _gc["ms"][g] = _gc["ms"].get(g, 0.0) + ms
            _gc["max_ms"] = max(_gc["max_ms"], ms)
    gc.callbacks.append(_cb)
    def _sample():
        names = {t.native_id: t.name for t in threading.enumerate()}
        for th in _proc.threads():
            total = th.user_time + th.system_time
            key = _group(names.get(th.id, "native (DuckDB, uvicorn C code)"))
            _cpu[key] = _cpu.get(key, 0.0) + total - _last.get(th.id, 0.0)
            _last[th.id] = total
        tmp = _out + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"at": time.time(), "cpu_s": _cpu, "gc": _gc}, f)
        os.replace(tmp, _out)
    def _loop():
        while True:
            time.sleep(1.0)
            try:
                _sample()
            except Exception:
                pass
    threading.Thread(target=_loop, name="crowd-profiler", daemon=True).start()
"""


def read_profile(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# --- the run -----------------------------------------------------------------------


class Sampler:
    """Server CPU and memory, load-generator CPU, event-loop lag.

    "Server" is every app process, plus the database server's processes when
    there is one (PostgreSQL runs): all of it is what an annotation costs."""

    def __init__(self, pids: list[int], db_pids: Callable[[], list[int]] = list) -> None:
        self.servers = [psutil.Process(pid) for pid in pids]
        self.server = self.servers[0]
        self._db_pids = db_pids
        self.me = psutil.Process()
        self.peak_rss = 0
        self.lag: list[float] = []
        self.marks: dict[str, tuple[float, float, float]] = {}
        self.machine: dict[str, tuple[float, float]] = {}

    def _server_cpu(self) -> float:
        total = 0.0
        for proc in self.servers + [psutil.Process(pid) for pid in self._db_pids()]:
            try:
                t = proc.cpu_times()
                total += t.user + t.system
            except psutil.Error:  # a database backend that just ended
                pass
        return total

    def mark(self, name: str) -> None:
        m = self.me.cpu_times()
        self.marks[name] = (time.monotonic(), self._server_cpu(), m.user + m.system)
        machine = psutil.cpu_times()
        self.machine[name] = (sum(machine) - machine.idle - getattr(machine, "iowait", 0.0),
                              getattr(machine, "steal", 0.0))

    def hwm(self) -> int:
        try:
            for line in Path(f"/proc/{self.server.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return self.peak_rss

    async def run(self, stop: asyncio.Event) -> None:
        interval = 0.1
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(interval)
            now = time.monotonic()
            self.lag.append(max(0.0, now - last - interval))
            last = now
            try:
                self.peak_rss = max(self.peak_rss, max(p.memory_info().rss for p in self.servers))
            except psutil.Error:
                pass


AnswerFor = Callable[[random.Random, dict[str, Any]], dict[str, Any]]  # (rng, the view's item) -> answer


async def annotator(b: Browser | BaselineBrowser, kind: str, profile: Profile, start_at: float, end: float,
                    think: float, rng: random.Random, rec: Recorder, answer_for: AnswerFor | None = None) -> None:
    """One person; `answer_for`: the answer to send for a task of several questions (--task)."""
    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    try:
        await b.open_page(profile)
    except EventError as exc:
        rec.error("page_load_" + exc.kind)
        return
    n_labels = len(profile.labels)
    if kind == "ours":
        await _annotate_ours(b, n_labels, end, think, rng, rec, answer_for)  # type: ignore[arg-type]
    else:
        await _annotate_baseline(b, n_labels, end, think, rng, rec)  # type: ignore[arg-type]


async def _annotate_ours(b: Browser, n_labels: int, end: float, think: float, rng: random.Random,
                         rec: Recorder, answer_for: AnswerFor | None) -> None:
    # the page's saved check: asked once nothing is left to send and the reply said pending (the server
    # replies after the commit); at most one in flight, one more if an answer went out meanwhile; asked
    # again SAVED_CHECK_DELAY_MS after a reply that still says pending
    check: asyncio.Task | None = None
    again = {"v": False}

    async def saved_checks() -> None:
        while True:
            again["v"] = False
            kind = await b.check_saved()
            if again["v"]:
                continue
            if kind != "pending" and kind != "failed":
                return
            await asyncio.sleep(SAVED_CHECK_DELAY_MS / 1000)

    try:
        while time.monotonic() < end:
            view = b.view
            assert view is not None
            if view.state == "ready":
                wait = rng.expovariate(1.0 / think)
                if time.monotonic() + wait >= end:
                    await asyncio.sleep(max(0.0, end - time.monotonic()))
                    break
                await asyncio.sleep(wait)
                try:
                    if answer_for is None:
                        view = await b.click_label(rng.randrange(n_labels), loadgen.comment_for(rng))
                    else:
                        view = await b.click_label(0, "", answer_for(rng, view.raw["item"]))
                except EventError:
                    await asyncio.sleep(1.0)  # the page shows the error; the person tries again
                    continue
                if check is not None and not check.done():
                    again["v"] = True
                elif view.saved != "saved":
                    check = asyncio.create_task(saved_checks())
            elif view.state == "waiting":
                await asyncio.sleep(min(view.timer or 30.0, max(0.0, end - time.monotonic())))
                if time.monotonic() >= end:
                    break
                try:
                    await b.recheck()
                except EventError as exc:
                    rec.error("recheck_" + exc.kind)
                    await asyncio.sleep(1.0)
            elif view.state in ("done", "quota"):
                return  # the person leaves (all done, or at the task's max_answers_per_person)
            else:
                rec.error(f"view_{view.state}")
                return
    finally:
        if check is not None and not check.done():
            try:
                await asyncio.wait_for(check, 10)
            except BaseException:
                pass


async def _annotate_baseline(b: BaselineBrowser, n_labels: int, end: float, think: float, rng: random.Random,
                             rec: Recorder) -> None:
    await b.fetch_image()
    while time.monotonic() < end and not b.done:
        wait = rng.expovariate(1.0 / think)
        if time.monotonic() + wait >= end:
            await asyncio.sleep(max(0.0, end - time.monotonic()))
            break
        await asyncio.sleep(wait)
        try:
            await b.click_label(rng.randrange(n_labels), loadgen.comment_for(rng))
        except EventError:
            await asyncio.sleep(1.0)


async def drive(kind: str, servers: list[loadgen.Server], users: list[str], args: argparse.Namespace,
                db_pids: Callable[[], list[int]] = list, flood: str | None = None, projectors: int = 0
                ) -> tuple[Recorder, list[Person], dict[str, Any]]:
    """Annotators spread over the servers round-robin (replicas behind a sticky load balancer).

    `flood` (login | person, see bench/floods.py) runs beside them through the measured window;
    `projectors` screens poll the projector view from the start of the ramp to the window's end."""
    rec = Recorder()
    persons = [Person(u) for u in users]
    cls = Browser if kind == "ours" else BaselineBrowser
    timeout = args.timeout
    server = servers[0]
    browsers = [cls(servers[i % len(servers)].url, p, rec, timeout=timeout) for i, p in enumerate(persons)]
    info: dict[str, Any] = {}

    # log everyone in first (pbkdf2 on the server: ~0.1 s each), outside the measured window
    t = time.monotonic()
    sem = asyncio.Semaphore(4)

    async def login(b: Browser | BaselineBrowser) -> None:
        async with sem:
            for attempt in range(3):
                try:
                    await b.login()
                    return
                except EventError as exc:
                    if attempt == 2:
                        rec.error(exc.kind)

    await asyncio.gather(*(login(b) for b in browsers))
    info["login_s"] = round(time.monotonic() - t, 1)
    r = await browsers[0].client.get("/config")
    profile = Profile.from_config(r.json())
    answer_for: AnswerFor | None = None
    if args.task:
        questions = await crowd_task.read_questions(browsers[0].client)
        answer_for = functools.partial(crowd_task.random_answer, questions)

    sampler = Sampler([s.pid for s in servers], db_pids)
    stop = asyncio.Event()
    sampling = asyncio.create_task(sampler.run(stop))
    t0 = time.monotonic() + 0.5
    window = (t0 + args.ramp, t0 + args.ramp + args.duration)
    rec.window = window
    rng = random.Random(args.seed)
    tasks = [asyncio.create_task(annotator(b, kind, profile, t0 + args.ramp * i / max(1, len(browsers)),
                                           window[1], args.think, random.Random(rng.random()), rec, answer_for))
             for i, b in enumerate(browsers)]

    async def marks() -> None:
        await asyncio.sleep(max(0.0, window[0] - time.monotonic()))
        sampler.mark("start")
        profile_path = Path(server.env.get("CROWD_PROFILE", "/nonexistent"))
        info["profile_start"] = read_profile(profile_path)
        lag_from = len(sampler.lag)
        await asyncio.sleep(max(0.0, window[1] - time.monotonic()))
        sampler.mark("end")
        info["profile_end"] = read_profile(profile_path)
        info["lag_window"] = sampler.lag[lag_from:]

    async def flooding() -> None:
        attacker = floods.FloodProcess(flood, server.url, start_in=window[0] - time.monotonic(),
                                       rate=args.flood_rate, connections=args.flood_connections, names=users,
                                       password=loadgen.password_for(floods.FLOOD_USER), route=loadgen.CLICK_ROUTE)
        await asyncio.sleep(max(0.0, window[1] - time.monotonic()))
        info["flood"] = await asyncio.to_thread(attacker.finish)

    seen: dict[str, Any] = {"polls": 0, "errors": Counter(), "seconds": []}
    screens = [projector_screen(server.url, browsers[i].client.cookies,
                                t0 + i * PROJECTOR_EVERY_S / max(1, projectors), window, seen)
               for i in range(projectors)]
    await asyncio.gather(marks(), *tasks, *([flooding()] if flood else []), *screens)
    if projectors:
        info["projector"] = {"screens": projectors, "polls": seen["polls"], "errors": dict(seen["errors"]),
                             "p50_ms": pct(seen["seconds"], 50), "p99_ms": pct(seen["seconds"], 99)}
    info["server_peak_rss_mb"] = round(max(sampler.hwm(), sampler.peak_rss) / 2**20, 1)
    stop.set()
    await sampling
    if projectors:  # on the server the crowd just left, its store full: what one screen's poll costs
        cost = await projector_cost(server, browsers[0].client.cookies)
        per_s = len(rec.click) / (sampler.marks["end"][0] - sampler.marks["start"][0])
        # a computation every PROJECTOR_EVERY_S whatever the number of screens, plus one cheap poll per screen
        model = (cost["fresh_ms"] + projectors * cost["cached_ms"]) / PROJECTOR_EVERY_S / per_s if per_s else None
        info["projector"].update(cost, modelled_ms_per_annotation=None if model is None else round(model, 3))
    (t_a, s_a, m_a), (t_b, s_b, m_b) = sampler.marks["start"], sampler.marks["end"]
    info["window_s"] = round(t_b - t_a, 2)
    info["server_cpu_s"] = round(s_b - s_a, 3)
    info["loadgen_cpu_cores"] = round((m_b - m_a) / (t_b - t_a), 2)
    info["server_cpu_cores"] = round((s_b - s_a) / (t_b - t_a), 2)
    busy = sampler.machine["end"][0] - sampler.machine["start"][0]
    # everything else on the machine (other tenants' processes): the noise behind the figures
    info["other_processes_cpu_cores"] = round(max(0.0, busy - (s_b - s_a) - (m_b - m_a)) / (t_b - t_a), 2)
    info["steal_cores"] = round((sampler.machine["end"][1] - sampler.machine["start"][1]) / (t_b - t_a), 2)
    a, b = info.pop("profile_start", None), info.pop("profile_end", None)
    if a and b and rec.click:
        n = len(rec.click)
        info["server_cpu_ms_per_annotation_by_thread"] = {
            k: round(1000 * (v - a["cpu_s"].get(k, 0.0)) / n, 2)
            for k, v in sorted(b["cpu_s"].items(), key=lambda kv: -(kv[1] - a["cpu_s"].get(kv[0], 0.0)))
            if v - a["cpu_s"].get(k, 0.0) > 0.001}
        info["server_gc"] = {"pauses": {g: c - a["gc"]["count"].get(g, 0) for g, c in b["gc"]["count"].items()},
                             "ms": {g: round(ms - a["gc"]["ms"].get(g, 0.0)) for g, ms in b["gc"]["ms"].items()},
                             "max_ms_whole_run": round(b["gc"]["max_ms"])}
    slow = sorted(int(at - window[0]) for at, took in zip(rec.click_at, rec.click) if took > 0.25)
    info["slow_clicks_by_second"] = dict(Counter(slow))
    lag = info.pop("lag_window")
    info["loop_lag_p99_ms"] = pct(lag, 99)
    if args.breakdown:
        info["breakdown"] = await breakdown(kind, server, profile)
    await asyncio.gather(*(b.close() for b in browsers), return_exceptions=True)
    return rec, persons, info




async def projector_screen(url: str, cookies: httpx.Cookies, start_at: float, window: tuple[float, float],
                           seen: dict[str, Any]) -> None:
    """One projector screen: GET /projector/data every PROJECTOR_EVERY_S with a signed-in person's cookies,
    from `start_at` until the window ends; polls inside the window are counted, with their latency."""
    async with httpx.AsyncClient(base_url=url, cookies=cookies, timeout=30.0) as client:
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        while time.monotonic() < window[1]:
            t = time.monotonic()
            try:
                r = await client.get("/projector/data")
                ok = r.status_code == 200
                if not ok:
                    seen["errors"][f"http_{r.status_code}"] += 1
            except httpx.HTTPError as exc:
                ok = False
                seen["errors"][type(exc).__name__] += 1
            if ok and window[0] <= t <= window[1]:
                seen["polls"] += 1
                seen["seconds"].append(time.monotonic() - t)
            await asyncio.sleep(max(0.0, PROJECTOR_EVERY_S - (time.monotonic() - t)))


async def projector_cost(server: loadgen.Server, cookies: httpx.Cookies, fresh: int = 8,
                         cached: int = 60) -> dict[str, float]:
    """Server CPU of one /projector/data poll that computes the view (the first after PROJECTOR_EVERY_S)
    and of one served from the shared computation, each the mean over `fresh` / `cached` polls, one at a
    time (the CPU clock ticks every 10 ms: single calls would be too coarse)."""
    proc = psutil.Process(server.pid)

    def cpu() -> float:
        t = proc.cpu_times()
        return t.user + t.system

    async with httpx.AsyncClient(base_url=server.url, cookies=cookies, timeout=30.0) as client:
        spent = 0.0
        for _ in range(fresh):
            await asyncio.sleep(PROJECTOR_EVERY_S + 0.2)
            c0 = cpu()
            (await client.get("/projector/data")).raise_for_status()
            spent += cpu() - c0
        c0 = cpu()
        for _ in range(cached):
            (await client.get("/projector/data")).raise_for_status()
        # the last `cached` polls may include one recomputation when they outlast PROJECTOR_EVERY_S
        return {"fresh_ms": round(1000 * spent / fresh, 2), "cached_ms": round(1000 * (cpu() - c0) / cached, 2)}


async def breakdown(kind: str, server: loadgen.Server, profile: Profile, n: int = 150) -> dict[str, Any]:
    """Server CPU and latency of single requests, one at a time, on the (now idle) server."""
    proc = psutil.Process(server.pid)
    person = Person("probe0000")
    rec = Recorder()
    out: dict[str, Any] = {}

    async def measure(name: str, call, pace: float = 0.0) -> None:
        """`pace` > 0: that many seconds between calls, and only the calls' CPU counted (the click
        routes' per-person budget refills at 20/s; back-to-back calls would meet its 429)."""
        lat = []
        for _ in range(10):  # warm up
            await call()
            await asyncio.sleep(pace)
        cpu = 0.0
        c0 = proc.cpu_times()
        for _ in range(n):
            t = time.monotonic()
            await call()
            lat.append(time.monotonic() - t)
            if pace:
                c1 = proc.cpu_times()
                cpu += (c1.user + c1.system) - (c0.user + c0.system)
                await asyncio.sleep(pace)
                c0 = proc.cpu_times()
        if not pace:
            c1 = proc.cpu_times()
            cpu = (c1.user + c1.system) - (c0.user + c0.system)
        out[name] = {"server_cpu_ms": round(1000 * cpu / n, 2), "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99)}

    if kind == "ours":
        b = Browser(server.url, person, rec)
        await b.login()
        await b.open_page(profile, heartbeat=False)

        async def healthz() -> None:
            (await b.client.get("/healthz")).raise_for_status()

        async def gradio_event() -> None:  # the page load: a queue=False Gradio event, the old click path's cost
            status, _ = await b.raw_event("page_load", [])
            assert status == 200

        async def saved() -> None:
            await b.act("saved", {})

        async def click() -> None:
            if b.view is None or b.view.state != "ready":
                raise RuntimeError("breakdown: the probe user ran out of records")
            b.view = loadgen.view_of(await b.act("answer", {"ticket": b.view.ticket, "answer": [profile.labels[0]]}))
        url = b.view.image_url if b.view else None

        async def image() -> None:
            (await b.client.get(url)).raise_for_status()

        await measure("GET /healthz (plain route in Gradio's app)", healthz)
        await measure("queue=False Gradio event (page load: next)", gradio_event)
        await measure("POST /ann/saved (JSON route, nothing pending)", saved, pace=0.06)
        await measure("POST /ann/answer (the click, JSON route)", click, pace=0.06)
        if url:
            await measure("GET /img/<id> (image, 64x48..320x240 JPEG)", image)
        await b.close()
    else:
        b2 = BaselineBrowser(server.url, person, rec)
        await b2.login()
        await b2.open_page(profile, heartbeat=False)

        async def page() -> None:
            (await b2.client.get("/gradio_api/info")).raise_for_status()

        async def qclick() -> None:
            if b2.record_id is None:
                raise RuntimeError("breakdown: the probe user ran out of records")
            out = await b2.event("submit", [profile.labels[0], "", None])  # answers a new record each time
            await b2._show(out)

        await measure("GET /gradio_api/info (Gradio route)", page)
        await measure("queued click event (select + insert + commit)", qclick)
        await b2.close()
    return out


# --- reporting ---------------------------------------------------------------------


def summarize(kind: str, rec: Recorder, persons: list[Person], info: dict[str, Any], store: dict[str, Any],
              args: argparse.Namespace) -> dict[str, Any]:
    n = len(rec.click)
    window = info["window_s"]
    return {
        "app": kind,
        "annotators": args.annotators,
        "clicks": n,
        "annotations_per_s": round(n / window, 1) if window else None,
        "click_p50_ms": pct(rec.click, 50), "click_p95_ms": pct(rec.click, 95), "click_p99_ms": pct(rec.click, 99),
        "click_to_next_p50_ms": pct(rec.click_to_next, 50), "click_to_next_p95_ms": pct(rec.click_to_next, 95),
        "click_to_next_p99_ms": pct(rec.click_to_next, 99),
        "image_fetches_on_click_path": len(rec.image),
        "image_p50_ms": pct(rec.image, 50), "image_p99_ms": pct(rec.image, 99),
        "preload_fetches": len(rec.preload),
        "preload_p50_ms": pct(rec.preload, 50), "preload_p99_ms": pct(rec.preload, 99),
        "saved_checks": len(rec.saved_check), "saved_check_p99_ms": pct(rec.saved_check, 99),
        "answer_to_saved_p50_ms": pct(rec.answer_to_saved, 50), "answer_to_saved_p99_ms": pct(rec.answer_to_saved, 99),
        "page_load_p50_ms": pct(rec.page_load, 50), "page_load_p99_ms": pct(rec.page_load, 99),
        "server_cpu_ms_per_annotation": round(1000 * info["server_cpu_s"] / n, 2) if n else None,
        "server_cpu_cores": info["server_cpu_cores"],
        "server_peak_rss_mb": info["server_peak_rss_mb"],
        "loadgen_cpu_cores": info["loadgen_cpu_cores"],
        "loadgen_loop_lag_p99_ms": info["loop_lag_p99_ms"],
        "other_processes_cpu_cores": info["other_processes_cpu_cores"],
        "steal_cores": info["steal_cores"],
        "slow_clicks_over_250ms_by_second": info["slow_clicks_by_second"],
        "errors": dict(rec.errors),
        "error_count": sum(rec.errors.values()),
        "retries": rec.events.get("retry_after_dropped_connection", 0),
        "events": dict(rec.events),
        "login_s": info["login_s"],
        "server_log_tracebacks": info.get("server_log_tracebacks", 0),
        "store": store,
        **({"breakdown": info["breakdown"]} if "breakdown" in info else {}),
        **({k: info[k] for k in ("server_cpu_ms_per_annotation_by_thread", "server_gc") if k in info}),
    }


ROWS = [
    ("clicks in window", "clicks"),
    ("annotations/s", "annotations_per_s"),
    ("click p50 ms", "click_p50_ms"), ("click p95 ms", "click_p95_ms"), ("click p99 ms", "click_p99_ms"),
    ("click-to-next p50 ms", "click_to_next_p50_ms"), ("click-to-next p95 ms", "click_to_next_p95_ms"),
    ("click-to-next p99 ms", "click_to_next_p99_ms"),
    ("image on click path (n)", "image_fetches_on_click_path"),
    ("image p50 ms", "image_p50_ms"), ("image p99 ms", "image_p99_ms"),
    ("preloads (n)", "preload_fetches"), ("preload p50 ms", "preload_p50_ms"), ("preload p99 ms", "preload_p99_ms"),
    ("saved checks (n)", "saved_checks"),
    ("answer-to-saved p50 ms", "answer_to_saved_p50_ms"), ("answer-to-saved p99 ms", "answer_to_saved_p99_ms"),
    ("server CPU ms/annotation", "server_cpu_ms_per_annotation"),
    ("server CPU cores", "server_cpu_cores"),
    ("server peak RSS MB", "server_peak_rss_mb"),
    ("loadgen CPU cores", "loadgen_cpu_cores"), ("loadgen loop lag p99 ms", "loadgen_loop_lag_p99_ms"),
    ("other processes CPU cores", "other_processes_cpu_cores"),
    ("errors", "error_count"),
    ("retries after a dropped connection", "retries"),
]
STORE_ROWS = [("accepted answers", "accepted"), ("reported saved", "reported_saved"),
              ("over overlap", "over_overlap"), ("accepted missing", "accepted_missing"),
              ("saved missing", "saved_missing"), ("told done", "told_done"), ("false done", "false_done"),
              ("gold answers", "gold_answers"), ("at quota", "at_quota"), ("over quota", "over_quota")]


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def table(results: dict[str, dict[str, Any]]) -> str:
    apps = list(results)
    both = apps == ["ours", "baseline"]
    head = ["metric"] + apps + (["ours/baseline"] if both else [])
    lines = []

    def row(name: str, values: list[Any]) -> None:
        cells = [name] + [_fmt(v) for v in values]
        if both:
            a, b = values
            ratio = (f"{a / b:.2f}" if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b
                     else "-")
            cells.append(ratio)
        lines.append(cells)

    for name, key in ROWS:
        row(name, [results[a].get(key) for a in apps])
    for name, key in STORE_ROWS:
        row(name, [results[a]["store"].get(key) for a in apps])
    widths = [max(len(str(c)) for c in col) for col in zip(head, *lines)]
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths)),
           "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(cells, widths)) for cells in lines]
    for a in apps:
        if results[a]["errors"]:
            out.append(f"errors ({a}): " + ", ".join(f"{k}={v}" for k, v in sorted(results[a]["errors"].items())))
        if results[a].get("server_cpu_ms_per_annotation_by_thread"):
            parts = ", ".join(f"{k} {v}" for k, v in results[a]["server_cpu_ms_per_annotation_by_thread"].items())
            out.append(f"server CPU ms per annotation by thread ({a}): {parts}")
            out.append(f"garbage-collector pauses in the window ({a}): {results[a]['server_gc']}")
        if results[a].get("breakdown"):
            out.append(f"per-request server cost ({a}, idle server, one request at a time):")
            for name, m in results[a]["breakdown"].items():
                out.append(f"  {name:50s} {m['server_cpu_ms']:6.2f} ms CPU   p50 {m['p50_ms']} ms  p99 {m['p99_ms']} ms")
    return "\n".join(out)


# --- main --------------------------------------------------------------------------


def run_one(kind: str, args: argparse.Namespace, run: Path, source: Path, users: list[str],
            replicas: int = 0, edge: bool = True, flood: str | None = None, projectors: int = 0,
            name: str | None = None) -> dict[str, Any]:
    """One app under the crowd. `replicas` > 0: that many copies of ours on one PostgreSQL server
    (STORE_URL; one shared DATA_DIR for the images and one SECRET_KEY, as behind one URL).
    `edge=False`: ours with its edge replaced by a pass-through (see NO_EDGE_SITE).
    `flood`: the same crowd with a flood beside it (bench/floods.py).
    `projectors`: the same crowd with that many projector screens polling (LEADERBOARD=on, a GOAL).
    `name`: the run's name (its folder and report line) instead of one made of the above."""
    name = name or (f"pg-x{replicas}" if replicas else f"{kind}+{flood}-flood" if flood else
                    f"{kind}+{projectors}-projectors" if projectors else kind if edge else f"{kind}-without-edge")
    folder = run / name
    folder.mkdir(parents=True, exist_ok=True)
    env = server_env(kind, args, run, source, users, folder, edge)
    if projectors:
        env.update({"LEADERBOARD": "on", "GOAL": f"{args.records * args.overlap} answers"})
    pg = None
    if replicas:
        import postgres  # noqa: PLC0415

        pg = postgres.start(args.commit_delay_ms)
        env.update({"STORE_URL": pg.url, "SECRET_KEY": "crowd-replicas-share-this-key"})
    t = time.monotonic()
    servers: list[loadgen.Server] = []
    try:
        if kind == "ours":  # ingest is set-up, not measured: run it without the emulated commit delay
            loadgen.ingest(env)
        print(f"[{name}] starting {max(1, replicas)} server(s) ({args.records} records) ...", flush=True)
        for i in range(max(1, replicas)):
            servers.append(loadgen.start_server(kind, env, folder / f"server{i or ''}.log", timeout=600))
        print(f"[{name}] up in {time.monotonic() - t:.1f}s; {args.annotators} annotators log in, ramp "
              f"{args.ramp:g}s, measure {args.duration:g}s", flush=True)
        rec, persons, info = asyncio.run(drive(kind, servers, users, args, pg.pids if pg else list, flood,
                                               projectors))
    finally:
        codes = [server.stop(signal.SIGTERM if kind == "ours" else signal.SIGINT, timeout=90) for server in servers]
    try:
        info["server_log_tracebacks"] = sum(server.log().count("Traceback") for server in servers)
        info["server_exit"] = codes[0] if len(codes) == 1 else codes
        store = loadgen.check_store(kind, Path(env["DATA_DIR"]), persons, args.overlap, pg.url if pg else None,
                                    load_task(args.task) if args.task else None)
    finally:
        if pg is not None:
            pg.stop()
    result = summarize(name, rec, persons, info, store, args)
    result["server_exit_code"] = info["server_exit"]
    for extra in ("flood", "projector"):
        if extra in info:
            result[extra] = info[extra]
    print(f"[{name}] done: {result['clicks']} clicks, p99 {result['click_p99_ms']} ms, "
          f"{result['server_cpu_ms_per_annotation']} ms CPU/annotation, errors {result['error_count']}", flush=True)
    return result


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, with what follows from it (the task's overlap, the ramp, the records needed)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--annotators", type=int, default=50)
    p.add_argument("--think", type=float, default=3.0, help="mean think time between clicks, seconds (exponential)")
    p.add_argument("--ramp", type=float, default=None, help="seconds over which annotators arrive (default N/10)")
    p.add_argument("--duration", type=float, default=60.0, help="measured seconds after the ramp")
    p.add_argument("--overlap", type=int, default=2)
    p.add_argument("--records", type=int, default=0, help="records in the dataset (default: 1.5x what the run needs)")
    p.add_argument("--commit-delay-ms", type=float, default=30.0, help="added to every fsync/fdatasync of the server")
    p.add_argument("--app", choices=["ours", "baseline", "both", "none"], default="both")
    p.add_argument("--pg-replicas", default="", help="also run ours on PostgreSQL with these numbers of "
                   "replicas, e.g. 1,2,3 (a throwaway server via scripts/pg.sh, same commit delay)")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--timeout", type=float, default=60.0, help="client timeout per request, seconds")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--breakdown", action="store_true", help="also time single requests on the idle server")
    p.add_argument("--profile-server", action="store_true",
                   help="load a sampler into the server (sitecustomize): CPU per thread and GC pauses")
    p.add_argument("--without-edge", action="store_true",
                   help="also run ours with its edge (annotator/ui/edge.py) replaced by a pass-through, in the "
                        "same run: what the edge's checks cost per annotation")
    p.add_argument("--workdir", type=Path, default=None, help="keep the run's files here (default: a temp dir)")
    p.add_argument("--flood", choices=["login", "person"], default=None,
                   help="also run ours with this flood beside the same crowd (bench/floods.py) and compare")
    p.add_argument("--flood-rate", type=float, default=20.0, help="--flood login: wrong sign-ins a second")
    p.add_argument("--flood-connections", type=int, default=8, help="--flood person: connections, back to back")
    p.add_argument("--projectors", type=int, default=0,
                   help="also run ours with this many projector screens polling beside the same crowd, and compare")
    p.add_argument("--task", type=Path, default=None,
                   help="run ours against this task file (its questions, its overlap) instead of one label question")
    p.add_argument("--source", type=Path, default=None,
                   help="SOURCE_DIR for --task (e.g. examples/preference/pairs); default: generated JPEGs")
    args = p.parse_args(argv)
    if args.task:
        if args.app != "ours":
            p.error("--task runs our app only (the baseline knows one label question): add --app ours")
        args.overlap = load_task(args.task).overlap
    if args.ramp is None:
        args.ramp = max(2.0, args.annotators / 10)
    if not args.records:
        answers = args.annotators * (args.ramp / 2 + args.duration) / args.think
        args.records = max(500, int(math.ceil(1.5 * answers / args.overlap)) + 8 * args.annotators)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run = args.workdir or Path(tempfile.mkdtemp(prefix="crowd-"))
    run.mkdir(parents=True, exist_ok=True)
    source = args.source.resolve() if args.source else run / "source"
    if not source.exists():
        loadgen.make_images(source, args.records, seed=args.seed)
    users = loadgen.user_names(args.annotators)
    print(f"crowd: {args.annotators} annotators, think {args.think:g}s, overlap {args.overlap}, "
          f"{args.records} records, +{args.commit_delay_ms:g} ms per fsync; files in {run}", flush=True)
    apps = {"both": ["ours", "baseline"], "none": []}.get(args.app, [args.app])
    results = {kind: run_one(kind, args, run, source, users) for kind in apps}
    if args.without_edge:
        results["ours-without-edge"] = run_one("ours", args, run, source, users, edge=False)
    for n in [int(x) for x in args.pg_replicas.split(",") if x.strip()]:
        results[f"pg-x{n}"] = run_one("ours", args, run, source, users, replicas=n)
    if args.flood:
        if "ours" not in results:
            results["ours"] = run_one("ours", args, run, source, users)
        flooded = results[f"ours+{args.flood}-flood"] = run_one("ours", args, run, source, users, flood=args.flood)
        flooded["click_p99_vs_no_flood"] = _ratio(flooded["click_p99_ms"], results["ours"]["click_p99_ms"])
        print(f"[flood] {args.flood}: {flooded['flood']}; click p99 {flooded['click_p99_ms']} ms against "
              f"{results['ours']['click_p99_ms']} ms without: x{flooded['click_p99_vs_no_flood']}", flush=True)
    if args.projectors:
        if "ours" not in results:
            results["ours"] = run_one("ours", args, run, source, users)
        shown = results[f"ours+{args.projectors}-projectors"] = run_one("ours", args, run, source, users,
                                                                         projectors=args.projectors)
        a, b = shown["server_cpu_ms_per_annotation"], results["ours"]["server_cpu_ms_per_annotation"]
        shown["projector_cpu_ms_per_annotation"] = round(a - b, 2) if a is not None and b is not None else None
        print(f"[projectors] {args.projectors} screens: {shown['projector']}; server CPU per annotation {a} ms "
              f"against {b} ms without them ({shown['projector_cpu_ms_per_annotation']:+} ms; from the cost of "
              f"one poll: {shown['projector']['modelled_ms_per_annotation']} ms)", flush=True)
    command = "python bench/crowd.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print()
    print(command)
    print(table(results))
    if "ours" in results and "ours-without-edge" in results:
        a, b = (results[k]["server_cpu_ms_per_annotation"] for k in ("ours", "ours-without-edge"))
        if a and b:
            print(f"the edge's cost: server CPU per annotation {a} ms with it, {b} ms without "
                  f"({100 * (a / b - 1):+.1f}%)")
    if args.json:
        args.json.write_text(json.dumps({"command": command, "args": {k: str(v) if isinstance(v, Path) else v
                                                                       for k, v in vars(args).items()},
                                         "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
