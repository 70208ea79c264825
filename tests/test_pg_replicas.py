"""Three app processes on one PostgreSQL database, 30 annotators spread over them, one replica killed.

Each replica is the real app (`python app.py` with STORE_URL) sharing DATA_DIR
(the images) and SECRET_KEY, as replicas behind one URL would. Ten people
work on each. Replica C is killed with SIGKILL while its people are busy;
they are gone with it. Checked, against the database:

- no record ever gets more than `overlap` submissions (I2, across processes);
- the leases C held are there right after the kill and gone once LEASE_TTL
  has passed, and the people on A and B finish all the work (I4);
- whoever is told "done" had nothing left: at that moment every record they
  had not answered was complete (I3);
- nothing acknowledged is lost: every answer on A and B is stored, and every
  answer C confirmed as saved before it died is stored.
"""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass, field

import psycopg

import pgserver
from clients import SHAPES, ApiUser, add_users, make_images, start_many, write_task

RECORDS = 40
OVERLAP = 2
TTL = 6.0
PEOPLE = {replica: [f"{replica}{i}" for i in range(10)] for replica in "abc"}


@dataclass
class Person:
    name: str
    answers: list[int] = field(default_factory=list)  # in the order sent
    confirmed: int = 0  # how many of `answers` a later view reported as saved
    done: bool = False
    errors: list[str] = field(default_factory=list)


def left_for(url: str, user: str) -> list[int]:
    """Records that `user` could still annotate: incomplete, not answered by them, not held by them."""
    with psycopg.connect(url) as conn:
        return [r for (r,) in conn.execute(
            "SELECT r.id FROM records r WHERE r.submitted < %s AND NOT EXISTS (SELECT 1 FROM responses x "
            "WHERE x.record_id = r.id AND x.user_id = %s) AND NOT EXISTS (SELECT 1 FROM leases l "
            "WHERE l.record_id = r.id AND l.user_id = %s)", [OVERLAP, user, user]).fetchall()]


def annotate(client: ApiUser, person: Person, url: str, stop: threading.Event, pause: float) -> None:
    try:
        view = client.next()
        while not stop.is_set():
            if view.get("pending") == 0:
                person.confirmed = len(person.answers)
            if view["state"] == "done":
                early = left_for(url, person.name)
                if early:
                    person.errors.append(f"told done while {early} were left")
                person.done = True
                return
            if view["state"] == "waiting":
                time.sleep(0.3)
                view = client.next()
                continue
            item = view["item"]
            person.answers.append(item["record_id"])
            time.sleep(pause)
            view = client.submit(item["record"], [SHAPES[item["record_id"] % len(SHAPES)]], "")
    except Exception as exc:  # the killed replica's people end here
        if not stop.is_set():
            person.errors.append(f"{type(exc).__name__}: {exc}")


def test_three_replicas_one_killed(tmp_path):
    base = tmp_path
    make_images(base / "source", RECORDS)
    data = base / "data"
    url = pgserver.create_database()
    users = [u for group in PEOPLE.values() for u in group]
    passwords = add_users(data / "passwords.json", users)
    env = {"SOURCE_DIR": str(base / "source"), "STORE_URL": url, "AUTH_MODE": "password", "PREFETCH_DEPTH": "3",
           "SECRET_KEY": "replicas-share-this-key", "LEASE_TTL": str(TTL),
           "TASK_FILE": str(write_task(base / "task.toml", overlap=OVERLAP, order="shuffle"))}
    servers = dict(zip("abc", start_many(*[(data, env)] * 3)))
    try:
        people = {u: Person(u) for u in users}
        stops = {r: threading.Event() for r in "abc"}
        threads = []
        for replica, names in PEOPLE.items():
            for name in names:
                client = ApiUser.with_password(servers[replica].url, name, passwords[name])
                # C's people are slower, so they still hold work when C dies
                pause = 0.25 if replica == "c" else 0.02
                threads.append(threading.Thread(target=annotate, args=(client, people[name], url, stops[replica],
                                                                     pause), daemon=True))
        for t in threads:
            t.start()
        while sum(len(people[n].answers) for n in PEOPLE["c"]) < 15:
            time.sleep(0.05)
        servers["c"].stop(signal.SIGKILL)
        killed_at = time.monotonic()
        stops["c"].set()
        with psycopg.connect(url) as conn:
            held = conn.execute("SELECT count(*) FROM leases WHERE user_id LIKE 'c%%'").fetchone()[0]
        assert held > 0, "the killed replica's people held leases when it died"

        for t in threads:
            t.join(180)
        survivors = [people[n] for r in "ab" for n in PEOPLE[r]]
        assert not [p.errors for p in survivors if p.errors], [p.errors for p in survivors if p.errors]
        assert all(p.done for p in survivors)
        # the work C held could only be finished once its leases expired, a LEASE_TTL after its last click
        assert time.monotonic() - killed_at >= TTL - 1.0
        with psycopg.connect(url) as conn:
            stale = conn.execute("SELECT count(*) FROM leases WHERE user_id LIKE 'c%%'").fetchone()[0]
        assert stale == 0, "the dead replica's leases were freed after LEASE_TTL"
    finally:
        for s in servers.values():
            s.stop()

    with psycopg.connect(url) as conn:
        per_record = dict(conn.execute("SELECT r.id, count(x.user_id) FILTER (WHERE x.status = 'submitted') "
                                       "FROM records r LEFT JOIN responses x ON x.record_id = r.id "
                                       "GROUP BY r.id").fetchall())
        stored = set(conn.execute("SELECT record_id, user_id FROM responses").fetchall())
    pgserver.drop_database(url)
    assert len(per_record) == RECORDS
    assert set(per_record.values()) == {OVERLAP}, "every record at its overlap, none over (I2)"
    for p in survivors:
        assert {(rid, p.name) for rid in p.answers} <= stored, f"answers of {p.name} lost"
    for name in PEOPLE["c"]:
        p = people[name]
        confirmed = {(rid, name) for rid in p.answers[:p.confirmed]}
        assert confirmed <= stored, f"answers {name} saw saved on the killed replica were lost"
