"""Password sign-in on the open internet: a flood of wrong guesses stalls nobody and is limited.

Against the real server (password mode). The test client connects from
127.0.0.1, which uvicorn trusts as a proxy (FORWARDED_ALLOW_IPS), so an
`X-Forwarded-For` header stands for a distinct client address, as Hugging
Face's proxy sends it. The limiter's arithmetic (growing delays, forgetting,
bounded memory) is checked in-process with a fake clock.
"""

from __future__ import annotations

import hashlib
import statistics
import threading
import time
import uuid

import httpx
import pytest

from clients import ApiUser, add_users, make_images, write_task

from annotator.auth import PasswordFile, SignInLimits

# clicks are timed against one sign-in, and a limit lasts seconds: alone on the machine (scripts/test.sh)
pytestmark = pytest.mark.serial

USERS = ["alice", "bob", "carol", "dave"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from apphelpers import start_app

    base = tmp_path_factory.mktemp("login-flood")
    make_images(base / "source", 8)
    passwords = add_users(base / "data" / "passwords.json", USERS)
    srv = start_app(base / "data", env={"AUTH_MODE": "password", "SOURCE_DIR": str(base / "source"),
                                        "TASK_FILE": str(write_task(base / "task.toml")), "ADMINS": "carol"})
    srv.passwords = passwords
    yield srv
    srv.stop()


def login(url: str, name: str, password: str, address: str) -> httpx.Response:
    with httpx.Client(base_url=url, timeout=60) as c:
        return c.post("/login", data={"username": name, "password": password},
                      headers={"X-Forwarded-For": address})


def stranger() -> str:
    return "nobody-" + uuid.uuid4().hex[:10]


def test_a_login_flood_does_not_stall_a_signed_in_person(server):
    """Wrong guesses from many addresses at once: the signed-in person's clicks keep being answered.

    Before the fix each PBKDF2 check ran on the event loop: while the flood lasted, a click waited
    for the checks queued ahead of it, typically longer than one whole sign-in takes alone. Now a
    click waits for none of them. (Measured against one sign-in on this machine, not a fixed time.)
    """
    person = ApiUser.with_password(server.url, "alice", server.passwords["alice"])
    person.click("next")
    alone = []
    with httpx.Client(base_url=server.url, timeout=60) as c:
        for i in range(3):
            t0 = time.monotonic()
            c.post("/login", data={"username": stranger(), "password": "wrong"},
                   headers={"X-Forwarded-For": f"192.0.2.{200 + i}"})
            alone.append(time.monotonic() - t0)
    one_sign_in = statistics.median(alone)
    done = threading.Event()

    def guesser(i: int) -> None:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            for _ in range(5):
                c.post("/login", data={"username": stranger(), "password": "wrong"},
                       headers={"X-Forwarded-For": f"192.0.2.{i}"})

    threads = [threading.Thread(target=guesser, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    threading.Thread(target=lambda: [t.join() for t in threads] and None or done.set()).start()
    time.sleep(0.3)
    latencies = []
    while not done.is_set():
        t0 = time.monotonic()
        person.click("next")
        latencies.append(time.monotonic() - t0)
        time.sleep(0.1)  # a person's pace: the edge's per-person budget (20/s) refuses a tighter loop
    person.close()
    median = statistics.median(latencies)
    print(f"one sign-in {one_sign_in * 1000:.0f} ms; clicks during the flood: median {median * 1000:.0f} ms "
          f"({len(latencies)})")
    assert len(latencies) >= 3, "the flood ended before any click was measured"
    assert median < one_sign_in / 4, (f"clicks took {median * 1000:.0f} ms (median of {len(latencies)}) during "
                                      f"a flood of sign-ins, each {one_sign_in * 1000:.0f} ms alone: the flood "
                                      f"stalls the server")


def test_failed_sign_ins_are_limited_per_address(server):
    address = "198.51.100.7"
    for _ in range(11):  # the free failures, then the first one that starts a delay
        r = login(server.url, stranger(), "wrong", address)
        assert r.status_code == 400, r.text
    t0 = time.monotonic()
    r = login(server.url, "dave", server.passwords["dave"], address)
    refused_in = time.monotonic() - t0
    assert r.status_code == 429, r.text
    assert "try again in" in r.json()["detail"] and int(r.headers["Retry-After"]) >= 1
    assert refused_in < 5, "a refusal must not wait for anything"
    # another address is not affected, and the same person signs in from there
    assert login(server.url, "dave", server.passwords["dave"], "198.51.100.8").status_code == 200


def test_failed_sign_ins_are_limited_per_name(server):
    for i in range(6):  # from six addresses: the name's free failures, then one that starts a delay
        r = login(server.url, "bob", "wrong", f"203.0.113.{i}")
        assert r.status_code == 400, r.text
    r = login(server.url, "bob", server.passwords["bob"], "203.0.113.99")
    assert r.status_code == 429 and "try again in" in r.json()["detail"], r.text
    assert login(server.url, "alice", server.passwords["alice"], "203.0.113.99").status_code == 200


def test_the_limit_shows_in_the_log_and_the_admin_health_view(server):
    address = "198.51.100.77"
    for _ in range(10):
        login(server.url, stranger(), "wrong", address)
    # each failure past the free ten refuses the address twice as long as the last (1 s, 2 s, 4 s...): on a
    # loaded machine a 1 s limit can end before the admin's dashboard call reads it, so fail again until the
    # health view sees the limit while it holds (a few rounds at most; it never shows without failures)
    with ApiUser.with_password(server.url, "carol", server.passwords["carol"]) as admin:
        for _ in range(6):
            login(server.url, stranger(), "wrong", address)
            health = admin.call("dashboard")[0]["health"]
            sign_ins = health["sign_ins"]
            if address in sign_ins["limited_addresses"]:
                break
    assert address in sign_ins["limited_addresses"], sign_ins
    assert sign_ins["failed"] >= 11
    assert any("Sign-in is limited" in w for w in health["warnings"]), health["warnings"]
    deadline = time.monotonic() + 10
    while f"repeated failed attempts from address '{address}'" not in server.log():
        assert time.monotonic() < deadline, server.log()[-3000:]
        time.sleep(0.2)


def test_unknown_names_cost_one_full_check_like_known_ones(tmp_path, monkeypatch):
    """No timing side channel on which names exist: an unknown name runs the same PBKDF2 as a known one."""
    add_users(tmp_path / "passwords.json", ["alice"])
    passwords = PasswordFile(tmp_path / "passwords.json")
    calls = []
    real = hashlib.pbkdf2_hmac
    monkeypatch.setattr(hashlib, "pbkdf2_hmac", lambda *a: calls.append(a[3]) or real(*a))
    assert not passwords.check("alice", "wrong")
    assert not passwords.check("mallory", "wrong")
    assert passwords.check("alice", "pw-alice-secret")
    assert len(calls) == 3 and len(set(calls)) == 1, calls


def test_delays_grow_and_are_forgotten():
    limits = SignInLimits(address_free=2, name_free=1)
    now = 1000.0
    assert limits.fail("a", "n1", now) == (0.0, 0.0)
    assert limits.fail("a", "n2", now) == (0.0, 0.0)
    delays = [limits.fail("a", f"m{i}", now)[0] for i in range(4)]
    assert delays == [1.0, 2.0, 4.0, 8.0]
    assert limits.wait("a", now=now) == 8.0 and limits.wait("b", now=now) == 0.0
    assert limits.wait("b", "n1", now) == 0.0
    assert limits.fail("b", "n1", now)[1] == 2.0  # the name's second failure
    assert limits.wait("c", "n1", now + 1) == 1.0
    limits.succeed("c", "n1")
    assert limits.wait("c", "n1", now + 1) == 0.0
    status = limits.status(now)
    assert status.limited_addresses == ("a",) and status.failed == 7
    # an hour without failures: counting starts again
    assert limits.fail("a", "z", now + 3601)[0] == 0.0


def test_a_burst_cannot_slip_past_the_free_failures():
    """Guesses that arrive together: once they could use up the free failures, one check at a time."""
    limits = SignInLimits(address_free=3, name_free=100)
    now = 0.0
    assert [limits.admit("a", f"n{i}", now) for i in range(4)] == [0.0, 0.0, 0.0, 1.0]
    assert limits.admit("b", "n9", now) == 0.0  # another address is not held up
    for i in range(3):
        assert limits.fail("a", f"n{i}", now) == (0.0, 0.0)
    assert limits.admit("a", "n3", now) == 0.0
    assert limits.admit("a", "n4", now) == 1.0  # the fourth check is still running
    assert limits.fail("a", "n3", now)[0] == 1.0
    assert limits.wait("a", now=now) == 1.0


def test_the_limiter_memory_is_bounded():
    limits = SignInLimits(address_free=0, name_free=0, capacity=100)
    for i in range(10_000):
        limits.fail(f"10.0.{i // 256}.{i % 256}", f"name{i}", 0.0)
    status = limits.status(0.0)
    assert len(status.limited_addresses) == 100 and len(status.limited_names) == 100
