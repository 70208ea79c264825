"""Fault drills: kill -9 under load, storage that fails and recovers, an unwritable DATA_DIR.

    python bench/drills.py kill9 --rounds 20
    python bench/drills.py failing-storage --mode write     # ENOSPC on writes (a full disk)
    python bench/drills.py failing-storage --mode sync      # EIO on fsync (a broken network disk)
    python bench/drills.py unwritable
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import loadgen  # noqa: E402
from loadgen import Browser, EventError, Person, Profile, Recorder  # noqa: E402

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
    return {(r, u): list(a) for r, u, a in rows}


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
    p.add_argument("drill", choices=["kill9", "failing-storage", "unwritable", "all"])
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--users", type=int, default=4)
    p.add_argument("--mode", choices=["write", "sync", "both"], default="both")
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
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    print(f"\n{sum(1 for r in results if r.get('ok'))} of {len(results)} drills passed; files in {root}")
    return 0 if all(r.get("ok") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
