"""Image links handed out after IMAGE_URL_TTL still load: a record is re-signed when it is shown.

In process, the whole HTTP app (`create_app`) with a clock moved forward instead of a 65 s sleep:
the links the page gets from `/ann/next` (on screen and buffered) after the TTL has passed are
fresh and load (200), while the old ones are refused (403). Within half a TTL the same link comes
back, so the browser does not fetch a preloaded image again.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from clients import make_images, write_task

from annotator import tickets
from annotator.config import load_settings
from annotator.runtime import Runtime
from annotator.tickets import Signer
from annotator.ui.server import create_app

TTL = 60


class _Clock:
    """time.time() of annotator.tickets, plus a shift the test moves forward."""

    def __init__(self) -> None:
        self.shift = 0.0

    def time(self) -> float:
        return time.time() + self.shift

    def __getattr__(self, name: str):  # the rest of the time module as it is
        return getattr(time, name)


@pytest.fixture()
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    make_images(tmp_path / "source", 12, size=(48, 36))
    settings = load_settings({"DATA_DIR": str(tmp_path / "data"), "CACHE_DIR": str(tmp_path / "cache"),
                              "SOURCE_DIR": str(tmp_path / "source"), "IMAGE_URL_TTL": str(TTL),
                              "TASK_FILE": str(write_task(tmp_path / "task.toml")), "AUTH_MODE": "local"})
    clock = _Clock()
    monkeypatch.setattr(tickets, "time", clock)  # signing and checking links both read this clock
    runtime = Runtime.open(settings)
    with TestClient(create_app(runtime)) as c:  # closing it closes the runtime
        c.clock = clock  # type: ignore[attr-defined]
        c.runtime = runtime  # type: ignore[attr-defined]
        yield c


def _links(view: dict) -> list[str]:
    return [view["item"]["image_url"]] + [u["image_url"] for u in view["upcoming"]]


def _view_with_buffer(client: TestClient) -> dict:
    """/ann/next once the buffer has filled (it fills in the background after the first call)."""
    deadline = time.monotonic() + 20
    while True:
        view = client.post("/ann/next", json={}).json()
        if view["upcoming"] or time.monotonic() > deadline:
            assert view["state"] == "ready" and view["upcoming"], view
            return view
        time.sleep(0.05)


def test_links_handed_out_after_the_ttl_load(client: TestClient) -> None:
    before = _view_with_buffer(client)
    old = _links(before)
    assert all(client.get(url).status_code == 200 for url in old)
    assert _links(client.post("/ann/next", json={}).json()) == old  # within the window: the same links

    client.clock.shift = TTL + 5  # the person looked at the page for 65 s
    assert {client.get(url).status_code for url in old} == {403}
    again = client.post("/ann/next", json={}).json()
    assert again["item"]["record_id"] == before["item"]["record_id"]  # the same record, re-signed
    fresh = _links(again)
    assert not set(fresh) & set(old), "an expired link was handed out again"
    assert [client.get(url).status_code for url in fresh] == [200] * len(fresh)

    # the next record comes from the buffer: its link is fresh too, and so are the buffered ones
    after = client.post("/ann/answer", json={"ticket": again["item"]["record"], "answer": ["circle"]}).json()
    assert after["state"] == "ready"
    assert [client.get(url).status_code for url in _links(after)] == [200] * len(_links(after))


@pytest.mark.parametrize("offset", [0, 1, 17, 29, 30, 31, 59, 60, 61, 1234])
def test_a_link_lives_at_most_the_ttl_and_at_least_half_of_it(offset: int) -> None:
    signer = Signer(b"k")
    now = 1_700_000_000 + offset
    url = signer.image_url(3, "alice", TTL, now=now)
    expires = int(url.split("e=")[1].split("&")[0])
    assert TTL / 2 < expires - now <= TTL
    signer.verify_image(3, "alice", str(expires), url.split("s=")[1], now=now + TTL / 2)


def test_the_image_lane_sends_rendered_images_and_leaves_everything_else_to_the_routes(client: TestClient) -> None:
    """annotator/ui/image_lane.py: a verified link to a rendered image is answered inside the edge, with the
    route's headers and bytes; a refused link, the zoomed view and a render go on to the routes."""
    import asyncio
    from urllib.parse import urlsplit

    from annotator.ui.image_lane import ImageLane

    url = _view_with_buffer(client)["item"]["image_url"]
    got = client.get(url)
    assert got.status_code == 200 and got.headers["cache-control"].startswith("private, max-age=")
    assert got.headers["cache-control"].endswith(", immutable") and got.headers["content-type"] == "image/png"
    assert int(got.headers["content-length"]) == len(got.content) > 0

    passed: list[str] = []

    async def routes(scope, receive, send) -> None:
        passed.append(scope["path"])

    lane = ImageLane(routes, client.runtime)  # type: ignore[attr-defined]

    def call(link: str) -> bytes | None:
        parts = urlsplit(link)
        sent: list[dict] = []

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": parts.path, "query_string": parts.query.encode()}
        asyncio.run(lane(scope, None, send))  # type: ignore[arg-type]
        return sent[1]["body"] if sent else None

    assert call(url) == got.content and passed == []  # answered by the lane
    path, query = url.split("?")
    for link in (f"{path}?{query.replace('s=', 's=0')}",  # a forged signature: the route's 403 and message
                 f"{path}/large?{query}",  # the zoomed view: rendered by the route when first asked for
                 f"{path}/2?{query}",  # an image this link does not sign
                 f"{path}0?{query}"):  # another record
        assert call(link) is None
    assert len(passed) == 4
    assert client.get(f"{path}?{query.replace('s=', 's=0')}").status_code == 403
    assert client.get(f"{path}/large?{query}").status_code == 200


def test_one_persons_flood_of_slow_image_requests_takes_two_work_threads_and_others_still_load(
        client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Links to images no longer in memory each cost a store read and a file read in the thread pool that
    everyone's clicks use. One person's requests of that kind run two at a time (edge.PersonSlots), 64 more
    wait on the event loop and the rest get a 429 at once; another person's image loads meanwhile."""
    service = client.runtime.service  # type: ignore[attr-defined]
    real_image = service.image
    held = {"running": 0, "most": 0}
    lock = threading.Lock()
    release = threading.Event()
    others = 12  # bob's record; the flood asks for records 1-11, whose renders wait for `release`

    def slow_image(record_id: int, **kw):
        if record_id != others:
            with lock:
                held["running"] += 1
                held["most"] = max(held["most"], held["running"])
            release.wait(20)
            with lock:
                held["running"] -= 1
        return real_image(record_id, **kw)

    monkeypatch.setattr(service, "cached_image", lambda *a, **kw: None)  # every request takes the slow path
    monkeypatch.setattr(service, "image", slow_image)
    signer = client.runtime.signer  # type: ignore[attr-defined]
    mine = [signer.image_url(1 + i % 11, "local", ttl=TTL) for i in range(2 + 64 + 10)]
    with ThreadPoolExecutor(len(mine) + 1) as pool:
        try:
            flood = [pool.submit(client.get, url) for url in mine]
            deadline = time.monotonic() + 20
            while sum(f.done() for f in flood) < 10 and time.monotonic() < deadline:
                time.sleep(0.05)  # the 10 past two running and 64 waiting are refused at once
            time.sleep(0.2)  # ... and no more than those
            refused = [f.result() for f in flood if f.done()]
            assert [r.status_code for r in refused] == [429] * 10, refused
            assert all(r.headers["retry-after"] == "1" and "wait a second" in r.json()["detail"] for r in refused)
            assert held == {"running": 2, "most": 2}, held  # two in work threads; 64 wait on the event loop
            bob = client.get(signer.image_url(others, "bob", ttl=TTL))
            assert bob.status_code == 200 and bob.headers["content-type"].startswith("image/")
        finally:
            release.set()
        codes = sorted(f.result(20).status_code for f in flood)
    assert codes == [200] * 66 + [429] * 10
    assert held["most"] == 2


def test_person_slots_queue_then_refuse_and_forget_people_with_nothing_in_flight() -> None:
    from annotator.ui.edge import PersonSlots, SlotsFull

    async def run() -> None:
        slots = PersonSlots(running=1, waiting=1)
        order: list[str] = []
        gate = asyncio.Event()

        async def hold(name: str, tag: str) -> None:
            async with slots.slot(name):
                order.append(tag)
                await gate.wait()

        first = asyncio.create_task(hold("ann", "a1"))
        second = asyncio.create_task(hold("ann", "a2"))
        await asyncio.sleep(0.01)
        with pytest.raises(SlotsFull):
            async with slots.slot("ann"):
                pass
        async with slots.slot("bob"):  # another person is not held up by ann
            order.append("b1")
        assert order == ["a1", "b1"]  # a2 waits its turn
        gate.set()
        await asyncio.gather(first, second)
        assert order == ["a1", "b1", "a2"] and len(slots) == 0

    asyncio.run(run())
