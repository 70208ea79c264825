"""Twenty people at once through the programmatic API, against the real server in a subprocess.

Both sign-in paths: Gradio's password login, and a simulated Space with Hugging
Face OAuth (forged `session` cookies, the production code path). Every user
loops next -> submit (a few also skip) until the server says "done". Checked:

- I1: nobody is shown a record they already answered or skipped;
- I2: no record gets more than `overlap` submissions;
- progress adds up (per person and for the team);
- nobody is told "done" while a record they have not seen could still be incomplete;
- every answer the clients made is in the store after the server stops.

The same run against a third server whose store is PostgreSQL (STORE_URL).
"""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from clients import SHAPES, ApiUser, add_users, make_images, read_store, start_many, write_task
from oauth_cookies import oauth_space_env

USERS = [f"user{i:02d}" for i in range(20)]
RECORDS = 40
OVERLAP = 2
SKIPPERS = {"user00", "user01", "user02"}  # skip their second record


@dataclass
class Log:
    """What one client saw and did, with client-side times."""
    user: str
    shown: list[tuple[float, int]] = field(default_factory=list)      # (time received, record id)
    answers: dict[int, tuple[str, str, str]] = field(default_factory=dict)  # record -> (status, label, comment)
    sent_at: dict[int, float] = field(default_factory=dict)             # record -> when the answer was sent
    done_at: float | None = None                                          # when "done" was received
    waits: int = 0
    last_view: dict | None = None
    images_ok: int = 0
    errors: list[str] = field(default_factory=list)


def work(client: ApiUser, log: Log, start: threading.Barrier, deadline: float) -> None:
    try:
        start.wait(60)
        view = client.next()
        while time.monotonic() < deadline:
            now = time.monotonic()
            log.last_view = view
            if view["state"] == "done":
                log.done_at = now
                return
            if view["state"] == "waiting":
                log.waits += 1
                assert view["held_by_others"] > 0, view
                time.sleep(0.2)
                view = client.next()
                continue
            item = view["item"]
            rid = item["record_id"]
            log.shown.append((now, rid))
            if len(log.answers) < 2:  # the image a person is shown loads, for them
                r = client.get(item["image_url"])
                assert r.status_code == 200 and r.headers["content-type"].startswith("image/"), r.text[:200]
                log.images_ok += 1
            label = SHAPES[(rid + len(log.user)) % len(SHAPES)]
            comment = f"{log.user} on {rid}"
            log.sent_at[rid] = time.monotonic()
            if log.user in SKIPPERS and len(log.answers) == 1:
                log.answers[rid] = ("skipped", "", "")
                view = client.skip(item["record"])
            else:
                log.answers[rid] = ("submitted", label, comment)
                view = client.submit(item["record"], [label], comment)
            assert view.get("message") is None, view["message"]
        log.errors.append("deadline passed before done")
    except Exception as exc:  # reported by the test, with the user's name
        log.errors.append(f"{type(exc).__name__}: {exc}")


def run_crowd(clients: dict[str, ApiUser], seconds: float = 90) -> dict[str, Log]:
    logs = {name: Log(name) for name in clients}
    start = threading.Barrier(len(clients))
    deadline = time.monotonic() + seconds
    threads = [threading.Thread(target=work, args=(clients[n], logs[n], start, deadline), name=n) for n in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 60)
    return logs


def timeline(logs: dict[str, Log], rid: int, name: str) -> str:
    """Who was shown and answered `rid` when, and when `name` was told done (for failure messages)."""
    t0 = min(t for log in logs.values() for t, _ in log.shown)
    lines = [f"{name} done at {logs[name].done_at - t0:.3f}; last view {logs[name].last_view}"]
    for log in logs.values():
        for t, r in log.shown:
            if r == rid:
                lines.append(f"  {log.user} shown {rid} at {t - t0:.3f}, answer sent at {log.sent_at[rid] - t0:.3f}")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def crowd_servers(tmp_path_factory):
    """One fresh server per sign-in mode, started together (a start is mostly `import gradio`)."""
    specs, extra = [], []
    for mode in ("password", "oauth"):
        base = tmp_path_factory.mktemp(f"crowd-{mode}")
        make_images(base / "source", RECORDS)
        env = {"SOURCE_DIR": str(base / "source"),
               "TASK_FILE": str(write_task(base / "task.toml", overlap=OVERLAP, order="shuffle")),
               "PREFETCH_DEPTH": "4"}
        passwords = {}
        if mode == "password":
            passwords = add_users(base / "data" / "passwords.json", USERS)
            env["AUTH_MODE"] = "password"
        else:
            env.update(oauth_space_env())
        specs.append((base / "data", env))
        extra.append((mode, passwords))
    servers = start_many(*specs)
    for server, (mode, passwords) in zip(servers, extra):
        server.mode = mode
        server.passwords = passwords
    yield {s.mode: s for s in servers}
    for s in servers:
        s.stop()


@pytest.fixture(scope="module")
def postgres_crowd_server(tmp_path_factory):
    """Password sign-in with the store on PostgreSQL (STORE_URL): the same checks on the other backend."""
    import pgserver

    base = tmp_path_factory.mktemp("crowd-postgres")
    make_images(base / "source", RECORDS)
    url = pgserver.create_database()
    env = {"SOURCE_DIR": str(base / "source"), "STORE_URL": url, "PREFETCH_DEPTH": "4", "AUTH_MODE": "password",
           "TASK_FILE": str(write_task(base / "task.toml", overlap=OVERLAP, order="shuffle"))}
    passwords = add_users(base / "data" / "passwords.json", USERS)
    (server,) = start_many((base / "data", env))
    server.mode, server.passwords = "postgres", passwords
    yield server
    server.stop()
    pgserver.drop_database(url)


@pytest.fixture(params=["password", "oauth", "postgres"])
def crowd_server(request):
    if request.param == "postgres":
        return request.getfixturevalue("postgres_crowd_server")
    return request.getfixturevalue("crowd_servers")[request.param]


def connect(server, name: str) -> ApiUser:
    if server.mode in ("password", "postgres"):
        return ApiUser.with_password(server.url, name, server.passwords[name])
    return ApiUser.with_oauth(server.url, name)


def test_twenty_users_at_once(crowd_server):
    server = crowd_server
    clients = {name: connect(server, name) for name in USERS}
    try:
        logs = run_crowd(clients)
        errors = {n: log.errors for n, log in logs.items() if log.errors}
        assert not errors, f"{errors}\n--- server log ---\n{server.log()[-3000:]}"

        # I1: nobody is shown a record they already answered or skipped
        for log in logs.values():
            answered_at: dict[int, int] = {}
            for i, (_, rid) in enumerate(log.shown):
                assert rid not in answered_at, f"{log.user} was shown record {rid} again after answering it"
                answered_at[rid] = i
            assert [rid for _, rid in log.shown] == list(log.answers), log.user

        # everyone ends "done", and the final progress adds up
        submissions = [(n, rid) for n, log in logs.items() for rid, a in log.answers.items() if a[0] == "submitted"]
        for name, log in logs.items():
            assert log.last_view["state"] == "done", (name, log.last_view)
            p = clients[name].progress()
            mine = sum(1 for a in log.answers.values() if a[0] == "submitted")
            assert p["mine_total"] == mine == p["mine_today"], (name, p)
            assert p["remaining_for_me"] == 0, (name, p)
            assert p["team_total"] == RECORDS and p["team_complete"] == RECORDS, p
            assert p["team_answers"] == len(submissions), p
        assert len(submissions) == RECORDS * OVERLAP  # I2 and completeness, as the clients saw it

        # I2 (client side): no record answered by more than `overlap` people
        per_record: dict[int, list[str]] = {}
        for name, rid in submissions:
            per_record.setdefault(rid, []).append(name)
        assert all(len(v) == OVERLAP for v in per_record.values()), per_record
        assert len(per_record) == RECORDS

        # I3: when "done" arrived, every record the person had not seen already had `overlap`
        # submissions sent (the server counts an answer before it replies, so this bound is exact
        # enough: fewer sent submissions would mean the record was still open)
        for name, log in logs.items():
            seen = set(log.answers)
            for rid, who in per_record.items():
                if rid in seen:
                    continue
                sent_before = [u for u in who if logs[u].sent_at[rid] <= log.done_at]
                assert len(sent_before) >= OVERLAP, \
                    f"{name} was told done while record {rid} had only {sent_before} answers\n" + \
                    timeline(logs, rid, name)
        assert sum(log.images_ok for log in logs.values()) >= len(USERS)
    finally:
        for c in clients.values():
            c.close()

    # every answer is in the store after the server stops
    # uvicorn re-raises the SIGTERM it handled after its graceful shutdown, hence -SIGTERM
    assert server.stop() in (0, -signal.SIGTERM), server.log()[-3000:]
    assert "every acknowledged answer is committed" in server.log()
    snap = read_store(server.data_dir, server.env.get("STORE_URL"))
    assert len(snap.record_ids) == RECORDS
    stored = {(r.record_id, r.user_id): r for r in snap.responses}
    expected = {(rid, n): a for n, log in logs.items() for rid, a in log.answers.items()}
    assert set(stored) == set(expected)
    for key, (status, label, comment) in expected.items():
        r = stored[key]
        assert r.status == status, key
        if status == "submitted":
            assert r.answer == {"label": label} and r.comment == comment, (key, r)
        else:
            assert r.answer == {} and not r.comment, (key, r)
    assert snap.history == {}  # nothing was written twice
    # I2 (store side): exactly `overlap` submissions per record, never more
    per_record_stored = snap.submitted_per_record()
    assert set(per_record_stored.values()) == {OVERLAP}
    # I3 (store side): whoever was told done had left only records that are complete
    for name, log in logs.items():
        unseen = set(snap.record_ids) - set(log.answers)
        assert all(per_record_stored[rid] >= OVERLAP for rid in unseen), name
    assert snap.stats["submitted"] == RECORDS * OVERLAP
    assert snap.stats["skipped"] == len(SKIPPERS)
    for name, log in logs.items():
        assert len(snap.by_user(name)) == len(log.answers)
