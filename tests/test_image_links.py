"""Image links handed out after IMAGE_URL_TTL still load: a record is re-signed when it is shown.

In process, the whole HTTP app (`create_app`) with a clock moved forward instead of a 65 s sleep:
the links the page gets from `/ann/next` (on screen and buffered) after the TTL has passed are
fresh and load (200), while the old ones are refused (403). Within half a TTL the same link comes
back, so the browser does not fetch a preloaded image again.
"""

from __future__ import annotations

import time
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
