"""Ingest reads only regular files inside SOURCE_DIR, within size and pixel limits (issue 12.7).

A symlink out of the folder, to /dev/zero, a FIFO or a socket, and a huge
image are each skipped with a reason a person can act on; none of them is
opened, blocks the ingest or is decoded. Every test runs the ingest in a
thread with a deadline, so a hang fails the test instead of stalling the run.
"""

from __future__ import annotations

import builtins
import io
import os
import socket
import struct
import threading
import zlib
from pathlib import Path
from typing import Callable

import pytest
from PIL import Image

from annotator import ingest
from annotator.ingest import IngestReport, ingest_dataset, ingest_folder
from annotator.store import Store
from ingesthelpers import png
from ingesthelpers import store  # noqa: F401,F811 - the fixture

DEADLINE_S = 120


def huge_png(width: int, height: int) -> bytes:
    """A complete, valid grayscale PNG of width x height zero pixels, built without holding its pixels."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    packer = zlib.compressobj(9)
    row = b"\0" * (width + 1)  # filter byte + pixels
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def within_deadline(run: Callable[[], IngestReport], unblock: Callable[[], None] = lambda: None) -> IngestReport:
    """Run an ingest in a thread; fail (and unblock it) if it does not finish in time."""
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(_catch(run)), daemon=True)
    thread.start()
    thread.join(DEADLINE_S)
    if thread.is_alive():
        unblock()
        pytest.fail(f"ingest did not finish within {DEADLINE_S} s (blocked on a FIFO or reading a device?)")
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]  # type: ignore[return-value]


def _catch(run: Callable[[], IngestReport]) -> object:
    try:
        return run()
    except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
        return exc


@pytest.fixture
def opened(monkeypatch) -> list[str]:
    """Every path opened for reading by any means Python offers, resolved."""
    paths: list[str] = []
    real_open, real_os_open = builtins.open, os.open

    def spy_open(file, *args, **kwargs):
        if isinstance(file, (str, Path)):
            paths.append(os.path.realpath(file))
        return real_open(file, *args, **kwargs)

    def spy_os_open(path, *args, **kwargs):
        paths.append(os.path.realpath(path))
        return real_os_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy_open)
    monkeypatch.setattr(io, "open", spy_open)
    monkeypatch.setattr(os, "open", spy_os_open)
    return paths


def test_links_out_of_the_folder_and_to_hidden_files_are_skipped_unread(store: Store, tmp_path: Path,
                                                                      opened: list[str]) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "photo.png").write_bytes(png((1, 2, 3)))
    root = tmp_path / "src"
    (root / "cat").mkdir(parents=True)
    (root / "cat" / "ok.png").write_bytes(png((9, 9, 9)))
    (root / ".secret_key").write_bytes(b"k" * 64)
    (root / "cat" / "same.png").symlink_to(root / "cat" / "ok.png")      # inside: fine
    (root / "cat" / "escape.png").symlink_to(outside / "photo.png")
    (root / "passwd.png").symlink_to("/etc/passwd")
    (root / "key.png").symlink_to(root / ".secret_key")
    (root / "dangling.png").symlink_to(root / "gone.png")
    (root / "loop.png").symlink_to(root / "loop.png")
    (root / "linked-dir").symlink_to(outside, target_is_directory=True)  # not walked into

    opened.clear()  # the set-up above wrote those files
    report = within_deadline(lambda: ingest_folder(store, root, tmp_path / "images"))
    skipped = dict(report.skipped)
    assert skipped.pop("cat/escape.png") == "a link to outside the folder"
    assert skipped.pop("passwd.png") == "a link to outside the folder"
    assert skipped.pop("key.png") == "a link to a hidden file"
    assert skipped.pop("dangling.png") == "a link to nothing (its target does not exist)"
    assert skipped.pop("loop.png").startswith("cannot read")
    assert not skipped, skipped
    assert report.added == 2  # ok.png and its link inside the folder
    assert not {"/etc/passwd", str((root / ".secret_key").resolve()), str((outside / "photo.png").resolve())} \
        & set(opened), "a file outside the folder, or a hidden one, was opened"


def test_fifo_device_and_socket_are_skipped_without_blocking(store: Store, tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "src"
    root.mkdir()
    (root / "ok.png").write_bytes(png((5, 6, 7)))
    os.mkfifo(root / "pipe.png")
    os.mkfifo(root / "metadata.jsonl")  # a FIFO where a metadata file is read
    (root / "zero.png").symlink_to("/dev/zero")
    (root / "null.jpg").symlink_to("/dev/null")
    server = socket.socket(socket.AF_UNIX)
    monkeypatch.chdir(root)  # a socket's path is limited to ~107 bytes: bind it by its short name
    server.bind("sock.png")

    def unblock() -> None:  # lets a reader stuck on a FIFO go on, so the thread can end
        for name in ("pipe.png", "metadata.jsonl"):
            try:
                os.close(os.open(root / name, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass

    try:
        report = within_deadline(lambda: ingest_folder(store, root, tmp_path / "images"), unblock)
    finally:
        server.close()
    skipped = dict(report.skipped)
    assert report.added == 1
    assert skipped == {"pipe.png": "not a regular file", "zero.png": "a link to outside the folder",
                       "null.jpg": "a link to outside the folder", "sock.png": "not a regular file",
                       "metadata.jsonl": "cannot read the metadata file: not a regular file"}


def test_device_inside_the_folder_is_not_read(store: Store, tmp_path: Path, monkeypatch) -> None:
    """A source folder that is (or holds) /dev: a character device is refused before it is opened."""
    root = tmp_path / "src"
    root.mkdir()
    (root / "ok.png").write_bytes(png((5, 6, 7)))
    (root / "zero.png").symlink_to("/dev/zero")
    monkeypatch.setattr(Path, "resolve", lambda self, strict=False: Path(os.path.abspath(self)))  # as if inside
    report = within_deadline(lambda: ingest_folder(store, root, tmp_path / "images"))
    assert dict(report.skipped) == {"zero.png": "not a regular file"} and report.added == 1


def test_reasons_are_for_people(store: Store, tmp_path: Path) -> None:
    root = tmp_path / "src"
    root.mkdir()
    jpeg = io.BytesIO()
    Image.new("RGB", (200, 150), (40, 90, 200)).save(jpeg, "JPEG")
    (root / "empty.png").write_bytes(b"")
    (root / "notes.txt").write_text("not an image")
    (root / "photo.heic").write_bytes(b"\0\0\0\x18ftypheic" + b"\0" * 64)
    (root / "cut.jpg").write_bytes(jpeg.getvalue()[:600])
    (root / "cut.png").write_bytes(png((1, 1, 1))[:40])
    with open(root / "huge.tif", "wb") as sparse:  # 150 MB without using the disk
        sparse.truncate(150 * 2**20)
    report = within_deadline(lambda: ingest_folder(store, root, tmp_path / "images"))
    assert dict(report.skipped) == {
        "empty.png": "empty file",
        "notes.txt": "not an image",
        "photo.heic": "not an image this app can read (convert it to JPEG or PNG)",
        "cut.jpg": "truncated",
        "cut.png": "truncated or damaged",
        "huge.tif": "too large: 150 MB, the limit is 100 MB",
    }
    assert report.added == 0


def test_an_image_above_the_pixel_limit_is_refused_from_its_header(store: Store, tmp_path: Path,
                                                                   monkeypatch) -> None:
    root = tmp_path / "src"
    root.mkdir()
    (root / "huge.png").write_bytes(huge_png(20000, 20000))  # 400 MB of pixels in a ~400 KB file
    (root / "ok.png").write_bytes(png((3, 3, 3)))
    decoded: list[tuple[int, int]] = []
    real_load = Image.Image.load

    def spy_load(self: Image.Image):
        decoded.append(self.size)
        return real_load(self)

    monkeypatch.setattr(Image.Image, "load", spy_load)
    report = within_deadline(lambda: ingest_folder(store, root, tmp_path / "images"))
    assert dict(report.skipped) == {
        "huge.png": "too large: 20000x20000 pixels, the limit is 50 megapixels (MAX_IMAGE_PIXELS)"}
    assert report.added == 1
    assert (20000, 20000) not in decoded, "the huge image was decoded before it was refused"

    # the limit is a setting: a lower one refuses more
    small = tmp_path / "src2"
    small.mkdir()
    (small / "medium.png").write_bytes(png((3, 3, 3), size=(1600, 1000)))
    report = ingest_folder(store, small, tmp_path / "images", max_pixels=1_000_000)
    assert dict(report.skipped) == {
        "medium.png": "too large: 1600x1000 pixels, the limit is 1 megapixels (MAX_IMAGE_PIXELS)"}


def test_dataset_ingest_applies_the_pixel_limit_and_gives_reasons(store: Store, tmp_path: Path) -> None:
    from datasets import Dataset, Features, Image as ImageFeature, Value

    rows = {"image": [{"bytes": png((1, 2, 3)), "path": "a.png"},
                      {"bytes": png((1, 2, 3), size=(1600, 1000)), "path": "big.png"},
                      {"bytes": b"<html>not found</html>", "path": "b.png"},
                      {"bytes": png((4, 5, 6))[:40], "path": "c.png"}],
            "label": ["x", "y", "z", "w"]}
    ds = Dataset.from_dict(rows, features=Features({"image": ImageFeature(decode=False), "label": Value("string")}))
    report = ingest_dataset(store, ds, tmp_path / "images", name="local", max_pixels=1_000_000)
    assert report.added == 1
    assert dict(report.skipped) == {
        "train[1] (big.png)": "too large: 1600x1000 pixels, the limit is 1 megapixels (MAX_IMAGE_PIXELS)",
        "train[2] (b.png)": "not an image",
        "train[3] (c.png)": "truncated or damaged",
    }


def test_max_image_pixels_setting(tmp_path: Path) -> None:
    from annotator.config import ConfigError, load_settings
    base = {"DATA_DIR": str(tmp_path / "d")}
    assert load_settings(base).max_image_pixels == 50_000_000
    assert load_settings({**base, "MAX_IMAGE_PIXELS": "120000000"}).max_image_pixels == 120_000_000
    with pytest.raises(ConfigError, match=r"MAX_IMAGE_PIXELS=50 is out of range: it counts pixels"):
        load_settings({**base, "MAX_IMAGE_PIXELS": "50"})
    with pytest.raises(ConfigError, match="MAX_IMAGE_PIXELS='lots' is not a whole number"):
        load_settings({**base, "MAX_IMAGE_PIXELS": "lots"})
    assert ingest.MAX_FILE_BYTES == 100 * 2**20
