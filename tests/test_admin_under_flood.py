"""Anonymous callers and annotators hammering the dashboard and the admin endpoints do not hold up an admin.

A simulated Space (OAuth, so anonymous calls reach the handlers, as on a real
Space). Flooders call the public `dashboard` endpoint and the admin endpoints
as nobody and as a signed-in annotator, as fast as they get answers; meanwhile
the admin's `admin_settings` must be answered within a generous bound. Before
the fix all of these shared one first-come-first-served group of 4, and the
admin waited behind every queued refusal.
"""

from __future__ import annotations

import statistics
import threading
import time

import pytest

from clients import ApiError, ApiUser, make_images, write_task
from oauth_cookies import oauth_space_env

# the admin's wait is bounded while a flood runs: alone on the machine (scripts/test.sh)
pytestmark = pytest.mark.serial

FLOODERS = 8
BOUND_S = 2.0  # the admin's median during the flood; without a flood it is tens of ms


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from apphelpers import start_app

    base = tmp_path_factory.mktemp("admin-flood")
    make_images(base / "source", 12)
    srv = start_app(base / "data", env={**oauth_space_env(), "SOURCE_DIR": str(base / "source"),
                                        "TASK_FILE": str(write_task(base / "task.toml")), "ADMINS": "boss"})
    yield srv
    srv.stop()


def test_a_flood_of_dashboard_calls_does_not_delay_an_admin_action(server):
    """Anonymous callers and an annotator queue dashboard calls as fast as the server takes them.

    They do not wait for the answers, so the dashboard's queue grows deep (as it would under many
    callers); an admin's action must not wait behind it.
    """
    stop = threading.Event()
    queued = [0]

    def flood(i: int) -> None:
        who = ApiUser.anonymous(server.url) if i % 2 else ApiUser.with_oauth(server.url, "ann")
        with who:
            while not stop.is_set():
                if who.http.post("/gradio_api/call/dashboard", json={"data": []}).status_code == 200:
                    queued[0] += 1

    threads = [threading.Thread(target=flood, args=(i,)) for i in range(FLOODERS)]
    for t in threads:
        t.start()
    latencies = []
    try:
        with ApiUser.with_oauth(server.url, "boss") as boss:
            time.sleep(2.0)  # the flood is under way
            for _ in range(5):
                t0 = time.monotonic()
                settings = boss.call("admin_settings")[0]
                latencies.append(time.monotonic() - t0)
                assert settings["settings"], settings
    finally:
        stop.set()
        for t in threads:
            t.join()
    median = statistics.median(latencies)
    print(f"admin_settings beside {queued[0]} queued dashboard calls: median {median * 1000:.0f} ms, "
          f"all {[round(x * 1000) for x in latencies]}")
    assert queued[0] > 50, "the flood did not run"
    assert median < BOUND_S, f"an admin waited {median:.2f} s (median) behind the dashboard's queue"


def test_refusals_still_refuse(server):
    with ApiUser.anonymous(server.url) as nobody, ApiUser.with_oauth(server.url, "ann") as ann:
        for who in (nobody, ann):
            with pytest.raises(ApiError):
                who.call("admin_settings")
        with pytest.raises(ApiError, match="sign in"):
            nobody.call("dashboard")
        assert "team" in ann.call("dashboard")[0]
