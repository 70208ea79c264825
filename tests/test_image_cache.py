"""Rendered images are keyed by content, never by record number (issue 11.2).

Record numbers restart at 1 in every DATA_DIR while CACHE_DIR (default
/tmp/annotator-cache) is shared by every app on the host and outlives a deleted
data folder. Two real servers with different images share one CACHE_DIR here:
each record must be served its own pixels.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from PIL import Image

from clients import ApiUser, start_many, write_task

from annotator.images import ImageCache, ImageError
from annotator.store import Store

MAX_SIDE = 256


def make_source(folder: Path, seed: int) -> dict[str, tuple[int, int, int]]:
    """Small PNGs (served byte for byte) and one large JPEG (rendered) per class folder; name -> colour."""
    colours = {}
    for i, name in enumerate(("circle/a.png", "square/b.png", "triangle/c.png", "circle/big.jpg")):
        colour = ((seed * 97 + i * 61) % 256, (seed * 31 + i * 113) % 256, (seed * 53 + i * 17) % 256)
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".jpg"):
            Image.new("RGB", (4 * MAX_SIDE, 3 * MAX_SIDE), colour).save(path, "JPEG", quality=95)
        else:
            Image.new("RGB", (40 + seed, 30), colour).save(path, "PNG")
        colours[name] = colour
    return colours


def annotate_all(url: str) -> dict[int, bytes]:
    """Every record's image as this server serves it, by record id (one local user, overlap 1)."""
    served: dict[int, bytes] = {}
    with ApiUser(url, "local") as user:
        view = user.next()
        while view["state"] == "ready":
            item = view["item"]
            r = user.get(item["image_url"])
            assert r.status_code == 200, r.text[:200]
            served[item["record_id"]] = r.content
            view = user.submit(item["record"], ["circle"])
    return served


def test_two_data_folders_sharing_one_cache_dir_each_serve_their_own_images(tmp_path: Path) -> None:
    cache = tmp_path / "shared-cache"
    task = write_task(tmp_path / "task.toml", overlap=1)
    sources, specs = {}, []
    for name, seed in (("a", 1), ("b", 2)):
        sources[name] = (tmp_path / f"source-{name}", make_source(tmp_path / f"source-{name}", seed))
        (tmp_path / name).mkdir()
        specs.append((tmp_path / name / "data", {
            "SOURCE_DIR": str(tmp_path / f"source-{name}"), "TASK_FILE": str(task), "AUTH_MODE": "local",
            "CACHE_DIR": str(cache), "IMAGE_MAX_SIDE": str(MAX_SIDE)}))
    servers = start_many(*specs)
    try:
        served = {name: annotate_all(server.url) for name, server in zip(sources, servers)}
    finally:
        for server in servers:
            server.stop()

    for name, (folder, colours) in sources.items():
        store = Store(tmp_path / name / "data" / "annotator.duckdb")
        try:
            records = store.records(store.record_ids())
        finally:
            store.close()
        assert sorted(served[name]) == sorted(records) and len(records) == 4
        for rid, record in records.items():
            source_name = record.source_key.removeprefix("folder:")
            original = (folder / source_name).read_bytes()
            body = served[name][rid]
            if source_name.endswith(".png"):  # small and browser-ready: served as it is
                assert hashlib.sha256(body).hexdigest() == hashlib.sha256(original).hexdigest(), \
                    f"server {name}, record {rid} ({source_name}) was served another image"
            else:  # rendered to display size: its colour, at its size
                with Image.open(io.BytesIO(body)) as shown:
                    assert max(shown.size) == MAX_SIDE
                    pixel = shown.convert("RGB").getpixel((shown.width // 2, shown.height // 2))
                assert all(abs(p - c) <= 6 for p, c in zip(pixel, colours[source_name])), \
                    f"server {name}, record {rid} ({source_name}) shows {pixel}, not {colours[source_name]}"


def test_a_rendition_is_named_by_content_and_parameters_and_a_changed_original_is_refused(tmp_path: Path) -> None:
    originals = tmp_path / "images"
    originals.mkdir()
    data = io.BytesIO()
    Image.new("RGB", (600, 400), (200, 30, 40)).save(data, "JPEG")
    sha = hashlib.sha256(data.getvalue()).hexdigest()
    (originals / "photo.jpg").write_bytes(data.getvalue())

    small, large = (ImageCache(originals, tmp_path / "cache", side) for side in (128, 512))
    assert small.cached(sha) is None
    first = small.prepare(sha, "photo.jpg")
    assert sha in first.name and small.cached(sha) == first
    assert large.cached(sha) is None  # other parameters, another rendition
    with Image.open(large.prepare(sha, "photo.jpg")) as img:
        assert img.size == (512, 341)
    assert small.cached("1") is None and small.cached("../" + sha) is None

    # the original's bytes changed under the record: nothing is rendered from them under the old hash
    Image.new("RGB", (600, 400), (0, 0, 255)).save(originals / "photo.jpg", "JPEG")
    other = ImageCache(originals, tmp_path / "cache2", 128)
    with pytest.raises(ImageError, match="changed since it was ingested"):
        other.prepare(sha, "photo.jpg")
    assert other.cached(sha) is None
