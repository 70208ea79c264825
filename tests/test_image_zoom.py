"""The zoomed view's large rendition (issue 14, zoom): `<image link>/large`, on demand, under the same rules.

In process, the whole HTTP app (`create_app`) on originals of 1000x750 (and one 200x150) with
IMAGE_MAX_SIDE=256: the display link gives 256 px, the same link with /large gives twice that (512 px),
never more than the original, oriented by its EXIF tag, cached under the original's SHA-256 and the
rendering parameters, and only once someone asks (the buffer's work renders the display size alone). A
forged, altered, other person's or expired large link is a 403 that renders nothing.
"""

from __future__ import annotations

import hashlib
import io
import time
from pathlib import Path

import pytest
from PIL import Image, ImageDraw
from starlette.testclient import TestClient

from clients import write_task
from test_image_links import _Clock  # the same clock moved forward, to expire links without waiting

from annotator import tickets
from annotator.config import load_settings
from annotator.images import ImageCache, ImageError
from annotator.runtime import Runtime
from annotator.ui.server import create_app

SIDE = 256
BIG = (1000, 750)
TTL = 60


def _photo(size: tuple[int, int], orientation: int = 1) -> bytes:
    """A JPEG with detail to zoom into (a checkerboard), with an EXIF orientation tag when asked."""
    w, h = size
    img = Image.new("RGB", size, (250, 250, 250))
    draw = ImageDraw.Draw(img)
    for y in range(0, h, 10):
        for x in range((y // 10) % 2 * 10, w, 20):
            draw.rectangle((x, y, x + 9, y + 9), fill=(20, 60, 200))
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90, exif=exif.tobytes())
    return buf.getvalue()


@pytest.fixture()
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    source = tmp_path / "source" / "circle"
    source.mkdir(parents=True)
    (source / "a_big.jpg").write_bytes(_photo(BIG))
    (source / "b_turned.jpg").write_bytes(_photo(BIG, orientation=6))  # shown turned: 750x1000
    (source / "c_small.jpg").write_bytes(_photo((200, 150)))
    settings = load_settings({"DATA_DIR": str(tmp_path / "data"), "CACHE_DIR": str(tmp_path / "cache"),
                              "SOURCE_DIR": str(tmp_path / "source"), "IMAGE_MAX_SIDE": str(SIDE),
                              "IMAGE_URL_TTL": str(TTL), "TASK_FILE": str(write_task(tmp_path / "task.toml")),
                              "AUTH_MODE": "local"})
    clock = _Clock()
    monkeypatch.setattr(tickets, "time", clock)
    runtime = Runtime.open(settings)
    with TestClient(create_app(runtime)) as c:
        c.clock = clock  # type: ignore[attr-defined]
        c.source = tmp_path / "source"  # type: ignore[attr-defined]
        c.large_dir = runtime.service.images.large.cache_dir  # type: ignore[attr-defined]
        yield c


def _items(client: TestClient) -> list[dict]:
    """The three records as the page gets them (on screen and buffered), once the buffer has filled."""
    deadline = time.monotonic() + 20
    while True:
        view = client.post("/ann/next", json={}).json()
        items = [view["item"], *view["upcoming"]]
        if len(items) == 3 or time.monotonic() > deadline:
            assert len(items) == 3, view
            return sorted(items, key=lambda i: i["record_id"])


def _large(url: str) -> str:
    path, query = url.split("?", 1)
    return f"{path}/large?{query}"


def _size(body: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(body)).size


def test_the_large_rendition_is_twice_the_display_size_capped_by_the_original_and_oriented(client) -> None:
    big, turned, small = _items(client)
    assert not any(client.large_dir.rglob("*.*")), "a large rendition was made before anyone zoomed"
    assert _size(client.get(big["image_url"]).content) == (256, 192)
    reply = client.get(_large(big["image_url"]))
    assert reply.status_code == 200 and reply.headers["content-type"] == "image/jpeg"
    assert _size(reply.content) == (512, 384)
    assert reply.headers["cache-control"].startswith("private, max-age=") and "immutable" in reply.headers["cache-control"]
    assert _size(client.get(_large(turned["image_url"])).content) == (384, 512)  # EXIF orientation 6
    assert _size(client.get(_large(small["image_url"])).content) == (200, 150)  # never past the original
    # cached by the original's content and the rendering parameters, not by the record's number
    shas = {hashlib.sha256(p.read_bytes()).hexdigest() for p in client.source.rglob("*.jpg")}
    assert client.large_dir.name == f"{2 * SIDE}px-q85-v2"
    assert {p.name.split(".")[0] for p in client.large_dir.rglob("*.*")} == shas


def test_forged_altered_and_expired_large_links_are_refused_and_render_nothing(client) -> None:
    big, turned, _ = _items(client)
    good = _large(big["image_url"])
    path, query = good.split("?", 1)
    forged = good[:-4] + ("0000" if not good.endswith("0000") else "1111")
    other_record = f"/img/{turned['record_id']}/large?{query}"  # big's signature on another record
    other_person = good.replace("u=local", "u=mallory")
    longer = good.replace(f"e={query.split('e=')[1].split('&')[0]}", "e=99999999999")
    for url in (forged, other_record, other_person, longer, f"{path}?u=local"):
        reply = client.get(url)
        assert reply.status_code == 403, (url, reply.status_code)
        assert "not valid" in reply.json()["detail"] or "expired" in reply.json()["detail"]
    assert not any(client.large_dir.rglob("*.*")), "a refused request rendered something"
    client.clock.shift = TTL + 5
    reply = client.get(good)
    assert reply.status_code == 403 and "expired" in reply.json()["detail"]
    assert not any(client.large_dir.rglob("*.*"))
    client.clock.shift = 0
    assert client.get(good).status_code == 200  # the same link, within its life: served


def test_the_large_rendition_keeps_the_pixel_limit(tmp_path: Path) -> None:
    """MAX_IMAGE_PIXELS holds for the large rendition as for the display one, read from the header."""
    data = _photo((300, 200))
    sha = hashlib.sha256(data).hexdigest()
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "x.jpg").write_bytes(data)
    cache = ImageCache(tmp_path / "o", tmp_path / "cache", 64, max_pixels=50_000)
    assert cache.large.max_side == 128 and cache.large.max_pixels == 50_000 and cache.large.large is cache.large
    with pytest.raises(ImageError, match="too large"):
        cache.large.prepare(sha, "x.jpg")
    assert not any(cache.large.cache_dir.rglob("*.*"))
