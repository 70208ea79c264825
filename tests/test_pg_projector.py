"""Two app processes on one PostgreSQL database show the same projector screen (issue 17).

Each replica is the real app (`python app.py` with STORE_URL, the same
DATA_DIR, SECRET_KEY and task). People answer on both, one chooses a
nickname on replica A; replica B's screen shows that nickname and the same
ranking, goal and labels, because the projector reads the store, not one
process's memory. Each replica computes its screen at most every 10 s, so the
test waits (by condition) for both to have caught up.
"""

from __future__ import annotations

import time

import pgserver
from clients import SHAPES, ApiUser, add_users, make_images, start_many, write_task

RECORDS = 16


def screen(client: ApiUser) -> dict:
    reply = client.get("/projector/data")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    body.pop("at")
    return body


def answer(client: ApiUser, n: int, wrong_every: int = 0) -> None:
    """Up to `n` answers, every `wrong_every`-th one unlike the others' (so agreement is below 100 %)."""
    view = client.next()
    for i in range(n):
        if view["state"] != "ready":
            return
        item = view["item"]
        label = SHAPES[item["record_id"] % len(SHAPES)]
        if wrong_every and i % wrong_every == 0:
            label = SHAPES[(item["record_id"] + 1) % len(SHAPES)]
        view = client.submit(item["record"], [label], "")


def test_two_replicas_show_the_same_leaderboard(tmp_path) -> None:
    make_images(tmp_path / "source", RECORDS)
    data = tmp_path / "data"
    url = pgserver.create_database()
    passwords = add_users(data / "passwords.json", ["ann", "bob", "cem"])
    env = {"SOURCE_DIR": str(tmp_path / "source"), "STORE_URL": url, "AUTH_MODE": "password",
           "SECRET_KEY": "replicas-share-this-key", "LEADERBOARD": "on", "GOAL": "30 answers",
           "TASK_FILE": str(write_task(tmp_path / "task.toml", overlap=2))}
    a, b = start_many((data, env), (data, env))
    try:
        ann = ApiUser.with_password(a.url, "ann", passwords["ann"])
        bob = ApiUser.with_password(b.url, "bob", passwords["bob"])
        cem = ApiUser.with_password(b.url, "cem", passwords["cem"])
        answer(ann, 10)
        answer(bob, 10, wrong_every=3)
        answer(cem, 6)
        assert "Owl" in ann.call("nickname", "Owl")[0]  # chosen on A

        deadline = time.monotonic() + 45
        while True:
            on_a, on_b = screen(ann), screen(bob)
            rows = (on_a["leaderboard"] or {}).get("rows", [])
            if on_a == on_b and any(r["name"] == "Owl" for r in rows):
                break
            assert time.monotonic() < deadline, f"the replicas disagree: {on_a} != {on_b}"
            time.sleep(0.5)
        names = {r["name"] for r in rows}
        assert "Owl" in names and all(n == "Owl" or n.startswith("Annotator ") for n in names)
        assert on_a["goal"]["target"] == 30 and on_a["goal"]["done"] >= 20  # ann's 10 and bob's 10 at least
        for client in (ann, bob, cem):
            client.close()
    finally:
        a.stop()
        b.stop()
        pgserver.drop_database(url)
