"""Fault drills: kill -9 under load, storage that fails and recovers, an unwritable DATA_DIR, a second process,
poisoned answers.

    python bench/drills.py kill9 --rounds 20
    python bench/drills.py failing-storage --mode write     # ENOSPC on writes (a full disk)
    python bench/drills.py failing-storage --mode sync      # EIO on fsync (a broken network disk)
    python bench/drills.py unwritable
    python bench/drills.py two-processes                    # a second app on the same DATA_DIR, each mode
    python bench/drills.py poison --users 200 --seconds 60  # one unstorable answer a second under a crowd
    python bench/drills.py all

Each drill starts the real app (`app.py`, password mode) on its own DATA_DIR,
drives it with simulated browsers (bench/loadgen.py) and prints PASS/FAIL
with the figures behind it; the exit code is 0 only when every drill run
passed. tests/test_drills.py runs short versions of the same functions.

What "acknowledged" means here: a click that succeeded is *accepted* (the
answer is in the server's memory and queued for the next group commit); it
is *reported saved* once a later answer from the server (a click or the
page's deferred "check saved") says "All answers saved", i.e. the person has
no answer waiting for a commit. kill -9 may lose accepted answers that were
not yet reported saved (by design: the click never waits for the disk); it
must never lose one reported saved.

Failing storage is emulated by bench/failsync.c, an LD_PRELOAD shim that
makes writes (ENOSPC) or fsyncs (EIO) of files under DATA_DIR fail while a
flag file exists, in the running server process: no restart is involved.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import loadgen  # noqa: E402
from loadgen import Browser, EventError, Person, Profile, Recorder  # noqa: E402

from annotator.model import decode_answer  # noqa: E402

FAILSYNC_SOURCE = Path(__file__).resolve().parent / "failsync.c"
# uvicorn re-raises the SIGTERM it handled once the graceful shutdown (flush, close) is done
CLEAN_EXIT = (0, -signal.SIGTERM)
CONNECTION_KINDS = {"connect", "connection_lost", "timeout", "ReadError", "RemoteProtocolError"}


# --- the failing-storage shim ------------------------------------------------------


def build_failsync() -> Path:
    """Compile bench/failsync.c once (keyed by its hash) and return the .so path."""
    import slowsync
    return slowsync.build(source=FAILSYNC_SOURCE)


def failsync_env(env: dict[str, str], flag: Path, prefix: Path, mode: str) -> dict[str, str]:
    """`env` plus the shim: while `flag` exists, files under `prefix` fail (mode sync|write|both)."""
    out = dict(env)
    shim = str(build_failsync())
    out["LD_PRELOAD"] = f"{shim} {out['LD_PRELOAD']}" if out.get("LD_PRELOAD") else shim
    out.update({"FAILSYNC_FLAG": str(flag), "FAILSYNC_PREFIX": str(prefix), "FAILSYNC_MODE": mode})
    return out


def slow_env(env: dict[str, str], delay_ms: float) -> dict[str, str]:
    import slowsync
    return slowsync.env(delay_ms, env)


# --- simulated annotators for drills -----------------------------------------------


@dataclass
class Report:
    """One answer from the server about a person's saved state."""
    user: str
    sent: float
    received: float
    saved: str  # saved | pending | failed
    upto: int  # accepted answers it covers


@dataclass
class Crew:
    """A few people working fast, with the occasional pause (so the page's saved check fires)."""
    url: str
    persons: list[Person]
    profile: Profile | None = None
    rec: Recorder = field(default_factory=Recorder)
    reports: list[Report] = field(default_factory=list)
    browsers: dict[str, Browser] = field(default_factory=dict)
    stopped_by: dict[str, str] = field(default_factory=dict)
    shown_after_start: dict[str, list[int]] = field(default_factory=dict)
    clicks: int = 0
    click_errors: list[str] = field(default_factory=list)

    async def open(self) -> None:
        self.browsers = {p.user: Browser(self.url, p, self.rec, timeout=20) for p in self.persons}
        for b in self.browsers.values():
            await b.login()
        r = await next(iter(self.browsers.values())).client.get("/config")
        self.profile = Profile.from_config(r.json())
        for b in self.browsers.values():
            await b.open_page(self.profile, heartbeat=False)
            self._note(b, time.monotonic(), len(b.person.accepted))
            if b.view and b.view.record_id is not None:
                self.shown_after_start.setdefault(b.person.user, []).append(b.view.record_id)

    def _note(self, b: Browser, sent: float, upto: int, saved: str | None = None) -> None:
        kind = saved if saved is not None else (b.view.saved if b.view else "")
        if kind:
            self.reports.append(Report(b.person.user, sent, time.monotonic(), kind, upto))

    async def check_saved(self, b: Browser) -> str:
        sent, upto = time.monotonic(), len(b.person.accepted)
        kind = await b.check_saved()
        if kind in ("saved", "pending", "failed"):
            self._note(b, sent, upto, kind)
        return kind

    async def work(self, until: float, rng: random.Random, think: float = 0.1, pause_p: float = 0.2) -> None:
        await asyncio.gather(*(self._person(b, until, random.Random(rng.random()), think, pause_p)
                               for b in self.browsers.values()))

    async def _person(self, b: Browser, until: float, rng: random.Random, think: float, pause_p: float) -> None:
        n_labels = len(self.profile.labels) if self.profile else 1
        while time.monotonic() < until:
            view = b.view
            if view is None or view.state != "ready":
                await asyncio.sleep(0.5)
                try:
                    sent = time.monotonic()
                    await b.recheck()
                    self._note(b, sent, len(b.person.accepted))
                except EventError as exc:
                    if exc.kind in CONNECTION_KINDS:
                        self.stopped_by[b.person.user] = exc.kind
                        return
                continue
            pause = rng.random() < pause_p
            await asyncio.sleep(rng.uniform(1.6, 2.2) if pause else rng.expovariate(1 / think))
            if pause:  # the page's deferred check fires 1.5 s after the last click
                try:
                    await self.check_saved(b)
                except EventError:
                    pass
            if time.monotonic() >= until:
                return
            sent = time.monotonic()
            try:
                await b.click_label(rng.randrange(n_labels))
                self.clicks += 1
                self._note(b, sent, len(b.person.accepted))
                if b.view and b.view.record_id is not None:
                    self.shown_after_start.setdefault(b.person.user, []).append(b.view.record_id)
            except EventError as exc:
                if exc.kind in CONNECTION_KINDS:
                    self.stopped_by[b.person.user] = exc.kind
                    return
                self.click_errors.append(f"{exc.kind}: {exc.message[:120]}")
                await asyncio.sleep(0.3)

    async def close(self) -> None:
        await asyncio.gather(*(b.close() for b in self.browsers.values()), return_exceptions=True)


def read_answers(data_dir: Path) -> dict[tuple[int, str], list[str]]:
    """(record, user) -> answer, from the store of a stopped (or killed) server."""
    import duckdb

    con = duckdb.connect(str(data_dir / "annotator.duckdb"), read_only=True)
    try:
        rows = con.execute("SELECT record_id, user_id, answer FROM responses").fetchall()
    finally:
        con.close()
    return {(r, u): list(decode_answer(a).values()) for r, u, a in rows}  # the one question's label


def missing(persons: list[Person], got: dict[tuple[int, str], list[str]], saved_only: bool,
            since: dict[str, int] | None = None) -> list[tuple[str, int, str]]:
    out = []
    for p in persons:
        answers = p.accepted[:p.saved_upto] if saved_only else p.accepted
        start = (since or {}).get(p.user, 0)
        last: dict[int, str] = {}
        for a in answers[start:]:
            last[a.record_id] = a.label
        # an answer later replaced by the same person (after a lost one was re-issued) counts as its last
        final: dict[int, str] = {}
        for a in p.accepted:
            final[a.record_id] = a.label
        for rid, label in last.items():
            if got.get((rid, p.user)) != [final[rid]]:
                out.append((p.user, rid, label))
    return out


# --- drill (a): kill -9 under load ---------------------------------------------------


def kill9(workdir: Path, rounds: int = 20, users: int = 4, delay_ms: float = 30.0, seed: int = 0,
          log=print) -> dict[str, Any]:
    """Kill the server at a random moment under load, `rounds` times, restarting on the same DATA_DIR."""
    rng = random.Random(seed)
    names = [f"k9user{i}" for i in range(users)]
    env = slow_env(loadgen.app_env(workdir, names, records=max(300, rounds * users * 40), overlap=2), delay_ms)
    data_dir = Path(env["DATA_DIR"])
    loadgen.ingest(env)
    persons = [Person(u) for u in names]
    log_path = workdir / "server.log"
    result: dict[str, Any] = {"drill": "kill9", "rounds": [], "ok": True, "problems": []}
    server = loadgen.start_server("ours", env, log_path)
    try:
        for r in range(rounds):
            crew = Crew(server.url, persons)
            kill_after = rng.uniform(1.0, 4.0)

            async def load_then_kill() -> None:
                await crew.open()
                # annotators continue: nobody is shown a record they were told is saved (I1)
                for p in persons:
                    saved = {a.record_id for a in p.accepted[:p.saved_upto]}
                    again = [rid for rid in crew.shown_after_start.get(p.user, [])[:1] if rid in saved]
                    if again:
                        result["problems"].append(f"round {r}: {p.user} shown saved record {again[0]} again")
                before = crew.clicks
                end = time.monotonic() + kill_after
                killer = asyncio.create_task(_kill_at(server, end))
                await crew.work(end + 5, rng)
                await killer
                if crew.clicks == before:
                    result["problems"].append(f"round {r}: no click succeeded after the restart")
                await crew.close()

            asyncio.run(load_then_kill())
            got = read_answers(data_dir)  # the killed server's file, read before the restart
            saved_lost = missing(persons, got, saved_only=True)
            accepted_lost = missing(persons, got, saved_only=False)
            info = {"round": r, "kill_after_s": round(kill_after, 2), "clicks": crew.clicks,
                    "accepted_total": sum(len(p.accepted) for p in persons),
                    "saved_total": sum(p.saved_upto for p in persons),
                    "saved_lost": len(saved_lost), "accepted_not_saved_lost": len(accepted_lost),
                    "click_errors": crew.click_errors[:3]}
            result["rounds"].append(info)
            if saved_lost:
                result["problems"].append(f"round {r}: answers reported saved are missing: {saved_lost[:5]}")
            if crew.click_errors:
                result["problems"].append(f"round {r}: click errors {crew.click_errors[:3]}")
            log(f"kill9 round {r + 1}/{rounds}: killed after {kill_after:.1f}s, {crew.clicks} clicks, "
                f"saved lost {len(saved_lost)}, accepted-not-saved lost {len(accepted_lost)}")
            # forget answers that were lost (accepted, not saved): the person may get those records again
            for p in persons:
                kept = [a for a in p.accepted if got.get((a.record_id, p.user)) == [a.label]]
                p.accepted = kept
                p.saved_upto = len(kept)
            server = loadgen.start_server("ours", env, log_path)
        # a last stretch of work, then a clean stop: everything accepted must be there
        crew = Crew(server.url, persons)
        marks = {p.user: len(p.accepted) for p in persons}

        async def last() -> None:
            await crew.open()
            await crew.work(time.monotonic() + 2, rng)
            await crew.close()

        asyncio.run(last())
        code = server.stop()
        got = read_answers(data_dir)
        lost = missing(persons, got, saved_only=False, since=marks)
        result["final"] = {"clicks": crew.clicks, "exit_code": code, "accepted_lost_on_clean_stop": len(lost)}
        if crew.clicks == 0:
            result["problems"].append("no click succeeded after the last restart")
        if lost:
            result["problems"].append(f"clean stop lost accepted answers: {lost[:5]}")
        if code not in CLEAN_EXIT:
            result["problems"].append(f"clean stop exited with {code}")
    finally:
        server.kill()
    result["ok"] = not result["problems"]
    result["saved_lost"] = sum(x["saved_lost"] for x in result["rounds"])
    result["accepted_not_saved_lost"] = sum(x["accepted_not_saved_lost"] for x in result["rounds"])
    return result


async def _kill_at(server: loadgen.Server, at: float) -> None:
    await asyncio.sleep(max(0.0, at - time.monotonic()))
    os.kill(server.pid, signal.SIGKILL)
    await asyncio.get_running_loop().run_in_executor(None, server.process.wait)


# --- drill (b): storage that fails and recovers ---------------------------------------


def failing_storage(workdir: Path, mode: str = "write", users: int = 3, healthy_s: float = 2.0,
                    failing_s: float = 4.0, recover_within_s: float = 20.0, stop_timeout: float = 45.0,
                    seed: int = 0, log=print) -> dict[str, Any]:
    """Commits fail for `failing_s` seconds in the running server, then storage recovers."""
    rng = random.Random(seed)
    names = [f"fsuser{i}" for i in range(users)]
    base = loadgen.app_env(workdir, names, records=400, overlap=2)
    flag = workdir / "storage-failing"
    flag.unlink(missing_ok=True)
    data_dir = Path(base["DATA_DIR"])
    loadgen.ingest(base)
    # the first person is an admin: /healthz shows the writer's queue depth to admins only
    env = {**failsync_env(slow_env(base, 5), flag, data_dir, mode), "ADMINS": names[0]}
    persons = [Person(u) for u in names]
    result: dict[str, Any] = {"drill": f"failing-storage ({mode})", "ok": True, "problems": []}
    server = loadgen.start_server("ours", env, workdir / "server.log")
    crew = Crew(server.url, persons)
    health: list[tuple[float, dict[str, Any]]] = []
    times: dict[str, float] = {}
    first_failing: dict[str, int] = {}

    async def poll_health(until: float) -> None:
        c = crew.browsers[names[0]].client  # the admin's session
        while time.monotonic() < until:
            try:
                health.append((time.monotonic(), (await c.get("/healthz")).json()))
            except (httpx.HTTPError, ValueError):
                pass
            await asyncio.sleep(0.25)

    async def run() -> None:
        await crew.open()
        t0 = time.monotonic()
        times["fail"] = t0 + healthy_s
        times["recover"] = times["fail"] + failing_s
        poller = asyncio.create_task(poll_health(times["recover"] + recover_within_s))

        async def flip() -> None:
            await asyncio.sleep(max(0.0, times["fail"] - time.monotonic()))
            for p in persons:
                first_failing[p.user] = len(p.accepted)
            flag.touch()
            await asyncio.sleep(max(0.0, times["recover"] - time.monotonic()))
            flag.unlink()

        await asyncio.gather(flip(), crew.work(times["recover"] + 1.0, rng, pause_p=0.3))
        # recovered: wait for the writer to catch up, then every page must say saved
        deadline = time.monotonic() + recover_within_s
        while time.monotonic() < deadline:
            if health and health[-1][0] > times["recover"] and health[-1][1].get("ok") and \
                    health[-1][1].get("queue_depth") == 0:
                break
            await asyncio.sleep(0.25)
        times["caught_up"] = time.monotonic()
        for b in crew.browsers.values():
            await crew.check_saved(b)
        poller.cancel()
        await crew.close()

    try:
        asyncio.run(run())
        false_acks = [r for r in crew.reports if r.saved == "saved" and r.received < times["recover"]
                      and r.upto > first_failing.get(r.user, 10**9)]
        failing_shown = [r for r in crew.reports if r.saved == "failed"]
        unhealthy = [h for t, h in health if times["fail"] <= t < times["recover"] and not h.get("ok")]
        final = {b.person.user: b.person.saved_upto == len(b.person.accepted) for b in crew.browsers.values()}
        accepted_during = sum(len(p.accepted) - first_failing.get(p.user, 0) for p in persons)
        code = server.stop(timeout=stop_timeout)
        try:
            got = read_answers(data_dir)
            lost = missing(persons, got, saved_only=False)
        except Exception as exc:  # noqa: BLE001
            got, lost = {}, [("store unreadable", 0, str(exc)[:200])]
        result.update({
            "clicks": crew.clicks, "accepted": sum(len(p.accepted) for p in persons),
            "accepted_while_failing": accepted_during, "false_acknowledgements": len(false_acks),
            "failure_shown_on_page": len(failing_shown), "healthz_not_ok_while_failing": len(unhealthy),
            "all_saved_after_recovery": all(final.values()),
            "seconds_to_catch_up": round(times["caught_up"] - times["recover"], 1),
            "accepted_missing_after_stop": len(lost), "exit_code": code, "click_errors": crew.click_errors[:5],
        })
        if false_acks:
            result["problems"].append(f"{len(false_acks)} false 'saved' reports while storage was failing")
        if accepted_during == 0:
            result["problems"].append("no answer was accepted while storage was failing (clicks must not wait)")
        if not failing_shown:
            result["problems"].append("the page never said that saving is failing")
        if not unhealthy:
            result["problems"].append("/healthz never reported the failure")
        if not all(final.values()):
            result["problems"].append(f"after recovery, not all pages say saved: {final}")
        if lost:
            result["problems"].append(f"{len(lost)} accepted answers missing after recovery and a clean stop: "
                                      f"{lost[:3]}")
        if crew.click_errors:
            result["problems"].append(f"click errors: {crew.click_errors[:3]}")
        if code not in CLEAN_EXIT:
            result["problems"].append(f"the clean stop exited with {code}")
    finally:
        flag.unlink(missing_ok=True)
        server.kill()
    tail = [line for line in server.log().splitlines() if "WARNING" in line or "ERROR" in line][-3:]
    result["server_log_tail"] = tail
    result["ok"] = not result["problems"]
    return result


# --- drill (c): DATA_DIR unwritable or full at start --------------------------------------


def _listing(folder: Path) -> list[str]:
    if not folder.exists() or not folder.is_dir():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _try_mount(target: Path, options: str) -> bool:
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
                          capture_output=True, text=True)
    return done.returncode == 0


def _umount(target: Path) -> None:
    subprocess.run(["umount", "-l", str(target)], capture_output=True)


def unwritable_cases(workdir: Path) -> list[str]:
    cases = ["under-a-file", "writes-fail", "fsync-fails"]
    probe = workdir / "mount-probe"
    if _try_mount(probe, "size=64k"):
        _umount(probe)
        cases += ["read-only-mount", "full-disk"]
    return cases


def unwritable(workdir: Path, case: str, log=print) -> dict[str, Any]:
    """Start the app on a DATA_DIR that cannot be written; it must stop with a clear message, creating nothing."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = loadgen.app_env(workdir, ["nobody"], records=20)
    mount: Path | None = None
    data = workdir / "data"
    if case == "under-a-file":
        blocker = workdir / "a-file"
        blocker.write_text("not a folder")
        data = blocker / "data"
    elif case in ("writes-fail", "fsync-fails"):
        data.mkdir(parents=True, exist_ok=True)
        flag = workdir / "failing"
        flag.touch()
        env = failsync_env(env, flag, data, "write" if case == "writes-fail" else "sync")
    elif case == "read-only-mount":
        mount = workdir / "ro"
        if not _try_mount(mount, "ro,size=1m"):
            return {"drill": f"unwritable ({case})", "ok": True, "skipped": "cannot mount tmpfs here"}
        data = mount / "data"
    elif case == "full-disk":
        mount = workdir / "full"
        if not _try_mount(mount, "size=1m"):
            return {"drill": f"unwritable ({case})", "ok": True, "skipped": "cannot mount tmpfs here"}
        data = mount / "data"
        data.mkdir()
        free = shutil.disk_usage(mount).free  # leave ~24 KB: enough for the 4 KB start-up probe, not a database
        (mount / "filler").write_bytes(b"\0" * max(0, free - 24 * 1024))
    else:
        raise ValueError(case)
    env["DATA_DIR"] = str(data)
    env["PASSWORD_FILE"] = str(workdir / "passwords.json")
    before = _listing(data)
    result: dict[str, Any] = {"drill": f"unwritable ({case})", "problems": []}
    try:
        started = time.monotonic()
        try:
            done = subprocess.run([sys.executable, str(loadgen.ROOT / "app.py")], cwd=loadgen.ROOT,
                                  env={**env, "GRADIO_SERVER_PORT": str(loadgen.free_port())},
                                  capture_output=True, text=True, timeout=120)
            code, output = done.returncode, done.stdout + done.stderr
        except subprocess.TimeoutExpired as exc:
            code, output = None, f"still running after 120 s: {exc.stdout!r} {exc.stderr!r}"
        after = _listing(data)
        message = [line for line in output.splitlines() if "cannot start" in line or "DATA_DIR" in line]
        result.update({"exit_code": code, "seconds": round(time.monotonic() - started, 1),
                       "message": message[:2] or output.strip().splitlines()[-3:],
                       "created": sorted(set(after) - set(before))})
        if code in (0, None):
            result["problems"].append(f"exit code {code}: the app did not refuse to start")
        if not message:
            result["problems"].append("no message naming DATA_DIR")
        if "Traceback" in output:
            result["problems"].append("a traceback instead of (or beside) a clear message")
        if result["created"]:
            result["problems"].append(f"half-created state left in DATA_DIR: {result['created'][:8]}")
    finally:
        if mount is not None:
            _umount(mount)
    result["ok"] = not result["problems"]
    return result


# --- drill (d): a second process on the same DATA_DIR -------------------------------------

NOLOCK_SOURCE = Path(__file__).resolve().parent / "nolock.c"
TWO_PROCESS_CASES = (("direct", "snapshot", False), ("snapshot", "snapshot", False), ("snapshot", "snapshot", True))


def two_processes(workdir: Path, first_mode: str = "direct", second_mode: str = "snapshot", *, no_locks: bool = False,
                  users: int = 3, work_s: float = 4.0, seed: int = 0, log=print) -> dict[str, Any]:
    """Start a second app on the DATA_DIR of one that is serving a crew: it must be refused (exit 2, one line
    naming DATA_DIR and the holder), and after the first one's clean stop every answer it accepted is there.

    `no_locks` runs both under bench/nolock.c (flock fails with ENOLCK, as on a FUSE bucket without locks):
    the lock file's heartbeat must refuse the second one just the same."""
    import slowsync

    workdir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    names = [f"twouser{i}" for i in range(users)]
    env = loadgen.app_env(workdir, names, records=200, overlap=1)
    env.update({"DB_MODE": first_mode, "CACHE_DIR": str(workdir / "cache-first")})
    if no_locks:
        env["LD_PRELOAD"] = str(slowsync.build(source=NOLOCK_SOURCE))
    data_dir = Path(env["DATA_DIR"])
    second_env = {**env, "DB_MODE": second_mode, "CACHE_DIR": str(workdir / "cache-second"),
                  "DATA_DIR_LOCK_WAIT": "2", "GRADIO_SERVER_PORT": str(loadgen.free_port())}
    label = f"two processes ({first_mode} then {second_mode}, {'heartbeat' if no_locks else 'flock'})"
    result: dict[str, Any] = {"drill": label, "problems": []}
    persons = [Person(u) for u in names]
    server = loadgen.start_server("ours", env, workdir / "first.log")
    try:
        crew = Crew(server.url, persons)

        async def work_while_a_second_one_starts() -> subprocess.CompletedProcess:
            await crew.open()
            working = asyncio.create_task(crew.work(time.monotonic() + work_s, rng))
            await asyncio.sleep(work_s / 4)
            second = await asyncio.to_thread(
                subprocess.run, [sys.executable, str(loadgen.ROOT / "app.py")], cwd=loadgen.ROOT, env=second_env,
                capture_output=True, text=True, timeout=120)
            await working
            for b in crew.browsers.values():  # the page's last "saved?" check
                await crew.check_saved(b)
            await crew.close()
            return second

        started = time.monotonic()
        second = asyncio.run(work_while_a_second_one_starts())
        output = second.stdout + second.stderr
        refusal = [line for line in second.stderr.splitlines() if line.startswith("annotator cannot start")]
        result.update({"second_exit_code": second.returncode, "second_message": refusal[:1],
                       "clicks": crew.clicks, "seconds": round(time.monotonic() - started, 1)})
        if second.returncode != 2:
            result["problems"].append(f"the second process exited with {second.returncode}: {output[-500:]}")
        if len(refusal) != 1 or str(data_dir) not in refusal[0] or f"pid {server.pid}" not in refusal[0]:
            result["problems"].append("no one-line message naming DATA_DIR and the holder's pid")
        if "Traceback" in output:
            result["problems"].append("a traceback in the second process's output")
        if crew.clicks == 0 or crew.click_errors:
            result["problems"].append(f"the first one's crew was disturbed: {crew.clicks} clicks, "
                                      f"errors {crew.click_errors[:3]}")
        code = server.stop()
        if code not in CLEAN_EXIT:
            result["problems"].append(f"the first one's clean stop exited with {code}")
        lost = missing(persons, read_answers(data_dir), saved_only=False)
        result["accepted"] = sum(len(p.accepted) for p in persons)
        result["accepted_lost"] = len(lost)
        if lost:
            result["problems"].append(f"answers the first one accepted are missing: {lost[:5]}")
    finally:
        server.kill()
    log(f"{label}: second exit {result.get('second_exit_code')}, {result.get('clicks')} clicks, "
        f"{result.get('accepted_lost')} lost")
    result["ok"] = not result["problems"]
    return result


# --- drill (e): one poisoned answer a second under a crowd ---------------------------------------

# Unstorable comments as a hostile client sends them (raw JSON escapes): a lone surrogate failed DuckDB's
# group commit, a NUL PostgreSQL's; each used to stop everyone's saving.
POISONS = ("\\ud800", "x \\udfff y", "\\u0000", "a\\u0000b")


def poison(workdir: Path, users: int = 20, seconds: float = 40.0, delay_ms: float = 30.0, seed: int = 0,
           log=print) -> dict[str, Any]:
    """A crowd answers while one person posts an unstorable answer every second, in alternating phases.

    Phases of `seconds / 4` alternate clean / poisoned on the same server, so
    machine noise falls on both alike. After every answer each annotator asks
    whether it is saved (the page's saved check, which waits for the commit):
    that wait is the answer's acknowledgement time. Passes when every poisoned
    answer is refused with a 400, no page ever hears "not saved", nothing
    accepted is missing after a clean stop, and the acknowledgement p99 with
    poison is within noise of the one without (at most 2x + 100 ms).
    """
    rng = random.Random(seed)
    names = [f"pouser{i}" for i in range(users)]
    env = slow_env(loadgen.app_env(workdir, names + ["poisoner"], records=max(400, users * 40), overlap=2),
                   delay_ms)
    data_dir = Path(env["DATA_DIR"])
    loadgen.ingest(env)
    persons = [Person(u) for u in names]
    server = loadgen.start_server("ours", env, workdir / "server.log")
    acks: dict[str, list[float]] = {"clean": [], "poisoned": []}
    clicks = {"clean": 0, "poisoned": 0}
    refused: Counter = Counter()
    not_saved: list[str] = []
    phase = {"name": "clean"}
    result: dict[str, Any] = {"drill": "poison-op", "users": users, "problems": []}

    async def annotate(b: Browser, until: float, r: random.Random) -> None:
        n_labels = len(b.profile.labels) if b.profile and b.profile.labels else 1
        while time.monotonic() < until:
            if b.view is None or b.view.state != "ready":
                await asyncio.sleep(0.5)
                await b.recheck()
                continue
            await asyncio.sleep(r.expovariate(1 / 0.5))
            name = phase["name"]
            await b.click_label(r.randrange(n_labels))
            started = time.monotonic()
            kind = await b.check_saved()
            if phase["name"] == name:  # an answer that straddles a phase change counts for neither
                clicks[name] += 1
                if kind == "saved":
                    acks[name].append(time.monotonic() - started)
            if kind != "saved":
                not_saved.append(kind)

    async def poisoner(b: Browser, until: float) -> None:
        i = 0
        while time.monotonic() < until:
            await asyncio.sleep(1.0)
            if phase["name"] != "poisoned" or b.view is None or b.view.state != "ready":
                continue
            bad = POISONS[i % len(POISONS)]
            i += 1
            body = f'{{"ticket": {json.dumps(b.view.ticket)}, "answer": ["{b.profile.labels[0]}"], ' \
                   f'"comment": "{bad}"}}'
            r = await b.client.post(f"{loadgen.CLICK_ROUTE}/answer", content=body.encode(),
                                    headers={"content-type": "application/json"})
            refused[str(r.status_code)] += 1

    async def phases(until: float) -> None:
        step = (until - time.monotonic()) / 4
        for name in ("clean", "poisoned", "clean", "poisoned"):
            phase["name"] = name
            await asyncio.sleep(step)

    async def run() -> None:
        rec = Recorder()
        browsers = [Browser(server.url, p, rec, timeout=30) for p in persons]
        bad = Browser(server.url, Person("poisoner"), rec, timeout=30)
        for b in browsers + [bad]:
            await b.login()
        profile = Profile.from_config((await bad.client.get("/config")).json())
        for b in browsers + [bad]:
            await b.open_page(profile, heartbeat=False)
        until = time.monotonic() + seconds
        await asyncio.gather(phases(until), poisoner(bad, until),
                             *(annotate(b, until, random.Random(rng.random())) for b in browsers))
        await asyncio.gather(*(b.close() for b in browsers + [bad]), return_exceptions=True)

    try:
        asyncio.run(run())
        code = server.stop()
        got = read_answers(data_dir)
        lost = missing(persons, got, saved_only=False)
    finally:
        server.kill()
    poisoned_stored = [k for k in got if k[1] == "poisoner"]

    result.update({
        "seconds": seconds, "commit_delay_ms": delay_ms,
        "clicks": clicks, "ack_p50_ms": {k: loadgen.pct(v, 50) for k, v in acks.items()},
        "ack_p99_ms": {k: loadgen.pct(v, 99) for k, v in acks.items()},
        "poison_sent": sum(refused.values()), "poison_replies": dict(refused),
        "not_saved_reports": len(not_saved), "accepted_lost": len(lost), "poison_stored": len(poisoned_stored),
        "exit_code": code,
    })
    p99 = result["ack_p99_ms"]
    if not refused or set(refused) != {"400"}:
        result["problems"].append(f"poisoned answers not all refused with 400: {dict(refused)}")
    if not_saved:
        result["problems"].append(f"{len(not_saved)} saved checks did not say saved: {Counter(not_saved)}")
    if lost:
        result["problems"].append(f"{len(lost)} accepted answers missing after a clean stop: {lost[:3]}")
    if poisoned_stored:
        result["problems"].append(f"poisoned answers stored: {poisoned_stored[:3]}")
    if None in p99.values() or p99["poisoned"] > 2 * p99["clean"] + 100:
        result["problems"].append(f"acknowledgements slower with poison: p99 {p99}")
    if code not in CLEAN_EXIT:
        result["problems"].append(f"the clean stop exited with {code}")
    result["ok"] = not result["problems"]
    log(f"poison: {clicks} clicks, ack p99 {p99} ms, poison replies {dict(refused)}, lost {len(lost)}")
    return result


# --- command line -----------------------------------------------------------------------


def _print(result: dict[str, Any]) -> None:
    status = "PASS" if result.get("ok") else "FAIL"
    if result.get("skipped"):
        status = "SKIP"
    print(f"{status}  {result['drill']}")
    for key, value in result.items():
        if key in ("drill", "ok", "rounds"):
            continue
        print(f"      {key}: {value}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("drill", choices=["kill9", "failing-storage", "unwritable", "two-processes", "poison", "all"])
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--users", type=int, default=4)
    p.add_argument("--mode", choices=["write", "sync", "both"], default="both")
    p.add_argument("--seconds", type=float, default=60.0, help="poison: how long the crowd answers")
    p.add_argument("--commit-delay-ms", type=float, default=30.0)
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    root = args.workdir or Path(tempfile.mkdtemp(prefix="drills-"))
    results = []
    if args.drill in ("kill9", "all"):
        results.append(kill9(root / "kill9", rounds=args.rounds, users=args.users, delay_ms=args.commit_delay_ms))
        _print(results[-1])
    if args.drill in ("failing-storage", "all"):
        for mode in (["write", "sync"] if args.mode == "both" else [args.mode]):
            results.append(failing_storage(root / f"failing-{mode}", mode=mode))
            _print(results[-1])
    if args.drill in ("unwritable", "all"):
        for case in unwritable_cases(root):
            results.append(unwritable(root / f"unwritable-{case}", case))
            _print(results[-1])
    if args.drill in ("two-processes", "all"):
        for first_mode, second_mode, no_locks in TWO_PROCESS_CASES:
            where = root / f"two-{first_mode}-{second_mode}{'-nolock' if no_locks else ''}"
            results.append(two_processes(where, first_mode, second_mode, no_locks=no_locks, users=args.users))
            _print(results[-1])
    if args.drill in ("poison", "all"):
        results.append(poison(root / "poison", users=args.users, seconds=args.seconds, delay_ms=args.commit_delay_ms))
        _print(results[-1])
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    print(f"\n{sum(1 for r in results if r.get('ok'))} of {len(results)} drills passed; files in {root}")
    return 0 if all(r.get("ok") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
