"""Real data nobody here made: the folders and datasets organizers actually point the app at.

One folder holds the odd-but-real inputs (CMYK, progressive and EXIF-turned
JPEGs, 16-bit and palette PNGs, animations, TIFF, BMP, a JPEG named .heic,
upper-case suffixes, a 1x1 image and a panorama, an image above the pixel
limit, a truncated JPEG, an empty file, text named .png, odd file names, a
link out of the folder, what macOS and Windows leave behind, and a
metadata.csv saved by a spreadsheet with a BOM, CRLF, a missing file, a
duplicate and extra columns). Each is either shown right (size, orientation,
rendered) or skipped with its name and reason, through the real app over
HTTP, and one bad file never stops the others. The smaller tests pin the
metadata quirks of real spreadsheets and zips one by one.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import unicodedata
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from PIL import Image

from apphelpers import start_app
from clients import ApiUser, add_users, write_task
from ingesthelpers import store  # noqa: F401 - the fixture

from annotator.images import ImageCache, save_original
from annotator.ingest import IngestReport, ingest_dataset, ingest_folder
from annotator.store import Store

ROOT = Path(__file__).resolve().parent.parent
RED, BLUE = (220, 20, 20), (20, 20, 220)


# --- the odd folder ----------------------------------------------------------------------------

def gradient(width: int, height: int) -> Image.Image:
    """An RGB picture with detail everywhere (a flat one would hide a wrong conversion)."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None].repeat(width, 1)
    return Image.fromarray(np.stack([x, y, 255 - x], -1).astype(np.uint8), "RGB")


def encoded(img: Image.Image, fmt: str, **options: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    return buf.getvalue()


def turned_jpeg(orientation: int) -> bytes:
    """A 300x100 JPEG stored unturned, its left third red, with an EXIF orientation: 6 shows the red on
    top (turned a quarter clockwise), 8 at the bottom."""
    img = Image.new("RGB", (300, 100), BLUE)
    img.paste(RED, (0, 0, 100, 100))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encoded(img, "JPEG", exif=exif, quality=95)


APPLE_DOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + b"\x00" * 60

# file -> the size it is shown at; every one of them must reach the page
SHOWN = {
    "cmyk.jpg": (300, 200), "progressive.jpg": (300, 200), "gray16.png": (300, 200),
    "gray_alpha.png": (300, 200), "palette_transparent.png": (300, 200), "animated.gif": (120, 80),
    "animated.webp": (120, 80), "photo.webp": (300, 200), "scan.tiff": (300, 200), "paint.bmp": (300, 200),
    "iphone.heic": (300, 200), "UPPER.JPG": (300, 200), "Mixed.Jpeg": (300, 200), "exif6.jpg": (100, 300),
    "exif8.jpg": (100, 300), "one.png": (1, 1), "panorama.jpg": (10000, 200), "with space.jpg": (300, 200),
    "café.jpg": (300, 200), "日本.png": (300, 200), "a#b.jpg": (300, 200), "50%.jpg": (300, 200),
    "what?.jpg": (300, 200), "nested/deeper/x.png": (300, 200), "camera.jpg": (300, 200),
}
# file or metadata line -> why it is left out; nothing else may be skipped
SKIPPED = {
    "big8000.jpg": "too large: 8000x8000 pixels, the limit is 50 megapixels (MAX_IMAGE_PIXELS)",
    "truncated.jpg": "truncated",
    "zero.jpg": "empty file",
    "text.png": "not an image this app can read (convert it to JPEG or PNG)",
    "link_out.png": "a link to outside the folder",
    "metadata.csv line 3": "file_name 'missing.jpg': no such file in the folder (hidden files are left out); "
                           "correct the name or add the file",
    "metadata.csv line 4": "cmyk.jpg is already given label 'cat' on metadata.csv line 2; this line's 'dog' is "
                           "left out (keep one line per file)",
}


def build_odd_folder(root: Path) -> Path:
    """The odd-but-real folder under `root` (returned), and a file outside it that a link points at."""
    src = root / "src"
    (src / "nested" / "deeper").mkdir(parents=True)
    picture = gradient(300, 200)
    files: dict[str, bytes] = {
        "cmyk.jpg": encoded(picture.convert("CMYK"), "JPEG"),
        "progressive.jpg": encoded(picture, "JPEG", progressive=True),
        "gray16.png": encoded(Image.fromarray(np.linspace(0, 65535, 60000).reshape(200, 300).astype(np.uint16)),
                              "PNG"),
        "gray_alpha.png": encoded(Image.merge("LA", [picture.convert("L"), Image.new("L", picture.size, 128)]),
                                  "PNG"),
        "palette_transparent.png": encoded(picture.convert("P", palette=Image.Palette.ADAPTIVE, colors=16), "PNG",
                                           transparency=0),
        "photo.webp": encoded(picture, "WEBP"),
        "scan.tiff": encoded(picture, "TIFF"),
        "paint.bmp": encoded(picture, "BMP"),
        "iphone.heic": encoded(picture, "JPEG", quality=70),  # what a phone's export really wrote
        "UPPER.JPG": encoded(picture, "JPEG", quality=71),
        "Mixed.Jpeg": encoded(picture, "JPEG", quality=72),
        "exif6.jpg": turned_jpeg(6),
        "exif8.jpg": turned_jpeg(8),
        "one.png": encoded(Image.new("RGB", (1, 1), RED), "PNG"),
        "panorama.jpg": encoded(gradient(10000, 200), "JPEG"),
        "big8000.jpg": encoded(Image.new("RGB", (8000, 8000), (10, 200, 30)), "JPEG"),
        "truncated.jpg": encoded(picture, "JPEG")[:1500],
        "zero.jpg": b"",
        "text.png": b"hello, this is not an image\n",
        "with space.jpg": encoded(picture, "JPEG", quality=73),
        "café.jpg": encoded(picture, "JPEG", quality=74),
        "日本.png": encoded(gradient(300, 200).transpose(Image.Transpose.FLIP_LEFT_RIGHT), "PNG"),
        "a#b.jpg": encoded(picture, "JPEG", quality=75),
        "50%.jpg": encoded(picture, "JPEG", quality=76),
        "what?.jpg": encoded(picture, "JPEG", quality=77),
        "nested/deeper/x.png": encoded(picture, "PNG"),
        # what macOS and Windows leave beside the images: never records, never "skipped" noise
        ".DS_Store": b"\x00\x00\x00\x01Bud1" + b"\x00" * 100,
        "._cmyk.jpg": APPLE_DOUBLE,
        "Thumbs.db": b"\xd0\xcf\x11\xe0" + b"\x00" * 100,
        "desktop.ini": b"[.ShellClassInfo]\r\n",
    }
    frames = [gradient(120, 80).rotate(angle) for angle in (0, 90, 180, 270)]
    for name in ("animated.gif", "animated.webp"):
        frames[0].save(src / name, save_all=True, append_images=frames[1:], duration=100, loop=0)
    picture.save(src / "camera.jpg", "MPO", save_all=True, append_images=[picture.rotate(180)])
    for name, data in files.items():
        (src / name).write_bytes(data)
    (src / "__MACOSX").mkdir()
    (src / "__MACOSX" / "._café.jpg").write_bytes(APPLE_DOUBLE)
    (src / "__MACOSX" / "photo.jpg").write_bytes(APPLE_DOUBLE)
    (root / "outside.png").write_bytes(encoded(picture, "PNG"))
    os.symlink(root / "outside.png", src / "link_out.png")
    # a spreadsheet's export: BOM, CRLF, a missing file, a file twice with two labels, columns nobody asked for
    (src / "metadata.csv").write_bytes(("\ufefffile_name,label,batch,notes\r\n"
                                        "cmyk.jpg,cat,1,first\r\n"
                                        "missing.jpg,dog,2,gone\r\n"
                                        "cmyk.jpg,dog,1,again\r\n"
                                        "with space.jpg,bird,4,\r\n").encode("utf-8"))
    return src


def skipped_of(report: IngestReport) -> dict[str, str]:
    return dict(report.skipped)


def keys_of(store: Store) -> dict[str, Any]:
    return {r.source_key: r for r in store.records(store.record_ids()).values()}


# --- ingest, one mechanism at a time -------------------------------------------------------------

def test_every_odd_file_is_stored_at_its_shown_size_or_named_with_its_reason(store: Store, tmp_path: Path) -> None:
    src = build_odd_folder(tmp_path)
    report = ingest_folder(store, src, tmp_path / "images")
    assert skipped_of(report) == SKIPPED
    records = keys_of(store)
    assert {k.removeprefix("folder:"): (r.width, r.height) for k, r in records.items()} == SHOWN
    assert records["folder:cmyk.jpg"].metadata == {"label": "cat", "batch": "1", "notes": "first"}
    assert records["folder:cmyk.jpg"].suggestion == "cat"
    assert records["folder:with space.jpg"].metadata == {"label": "bird", "batch": "4", "notes": ""}
    assert records["folder:nested/deeper/x.png"].suggestion == "nested"
    assert records["folder:camera.jpg"].image_path.endswith(".jpg")  # an MPO is a JPEG to every browser
    assert records["folder:UPPER.JPG"].suggestion is None  # no line, no sub-folder: no suggestion


@pytest.mark.parametrize("separator", [";", "\t"])
def test_a_spreadsheets_csv_with_another_separator_and_spaced_header_is_read(store: Store, tmp_path: Path,
                                                                            separator: str) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.png").write_bytes(encoded(gradient(20, 10), "PNG"))
    (src / "metadata.csv").write_text(f"file_name{separator} label\r\na.png{separator}cat\r\n", encoding="utf-8")
    report = ingest_folder(store, src, tmp_path / "images")
    assert report.skipped == []
    assert keys_of(store)["folder:a.png"].metadata == {"label": "cat"}


def test_a_utf16_csv_is_read_and_a_latin1_one_says_how_to_save_it(store: Store, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "one").mkdir(parents=True)
    (src / "two").mkdir()
    (src / "one" / "é.png").write_bytes(encoded(gradient(20, 10), "PNG"))
    (src / "two" / "b.png").write_bytes(encoded(gradient(21, 10), "PNG"))
    (src / "one" / "metadata.csv").write_bytes("file_name\tnote\r\né.png\tcafé\r\n".encode("utf-16"))
    (src / "two" / "metadata.csv").write_bytes("file_name,note\nb.png,café\n".encode("latin-1"))
    report = ingest_folder(store, src, tmp_path / "images")
    assert keys_of(store)["folder:one/é.png"].metadata["note"] == "café"
    assert skipped_of(report) == {"two/metadata.csv": 'cannot read the metadata file: it is not UTF-8 text (save '
                                                      'it again as UTF-8, in a spreadsheet "CSV UTF-8")'}


def test_metadata_names_match_files_across_unicode_forms_and_case(store: Store, tmp_path: Path) -> None:
    """A Mac writes `café` decomposed (NFD), a spreadsheet composed (NFC); Windows users type `img_1.jpg`
    for `IMG_1.JPG`. Each line still labels its file; a name matching two files by case is refused."""
    src = tmp_path / "src"
    src.mkdir()
    (src / unicodedata.normalize("NFD", "café.png")).write_bytes(encoded(gradient(20, 10), "PNG"))
    (src / "IMG_1.JPG").write_bytes(encoded(gradient(21, 10), "JPEG"))
    (src / "Twin.png").write_bytes(encoded(gradient(22, 10), "PNG"))
    (src / "twin.PNG").write_bytes(encoded(gradient(23, 10), "PNG"))
    lines = [{"file_name": unicodedata.normalize("NFC", "café.png"), "label": "cat"},
             {"file_name": "img_1.jpg", "label": "dog"}, {"file_name": "TWIN.png", "label": "bird"}]
    (src / "metadata.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    report = ingest_folder(store, src, tmp_path / "images")
    records = keys_of(store)
    assert records["folder:" + unicodedata.normalize("NFD", "café.png")].suggestion == "cat"
    assert records["folder:IMG_1.JPG"].suggestion == "dog"
    assert skipped_of(report) == {"metadata.jsonl line 3": "file_name 'TWIN.png': no such file in the folder "
                                  "(hidden files are left out); correct the name or add the file"}


def test_a_record_of_several_images_finds_its_files_across_unicode_forms(store: Store, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / unicodedata.normalize("NFD", "é1.png")).write_bytes(encoded(gradient(20, 10), "PNG"))
    (src / "b.png").write_bytes(encoded(gradient(21, 10), "PNG"))
    (src / "metadata.csv").write_text(f"a;b;prompt\n{unicodedata.normalize('NFC', 'é1.png')};b.png;hi\n",
                                      encoding="utf-8")
    report = ingest_folder(store, src, tmp_path / "images", image_columns=("a", "b"), text_columns=("prompt",))
    assert report.skipped == [] and report.added == 1


def test_a_file_name_that_is_not_utf8_is_ingested_under_a_readable_name(store: Store, tmp_path: Path) -> None:
    """A zip made on Windows unpacks on Linux with names in its code page: the image is still annotated."""
    src = tmp_path / "src"
    (src / os.fsdecode(b"caf\x82")).mkdir(parents=True)
    (src / os.fsdecode(b"caf\x82") / os.fsdecode(b"\x82t\x82.png")).write_bytes(encoded(gradient(20, 10), "PNG"))
    report = ingest_folder(store, src, tmp_path / "images")
    assert report.skipped == [] and report.added == 1
    (record,) = keys_of(store).values()
    assert record.source_key == "folder:caf\\x82/\\x82t\\x82.png" and record.suggestion == "caf\\x82"
    again = ingest_folder(store, src, tmp_path / "images")
    assert (again.added, again.already_present) == (0, 1)


def test_a_dataset_row_naming_a_missing_file_says_so(store: Store, tmp_path: Path) -> None:
    from datasets import Dataset, Features, Image as ImageFeature

    present = tmp_path / "there.png"
    present.write_bytes(encoded(gradient(20, 10), "PNG"))
    features = Features({"image": ImageFeature(decode=False)})
    ds = Dataset.from_list([{"image": {"path": str(present), "bytes": None}},
                            {"image": {"path": str(tmp_path / "gone.png"), "bytes": None}}], features=features)
    report = ingest_dataset(store, ds, tmp_path / "images", name="local")
    assert report.added == 1
    assert skipped_of(report) == {"train[1] (gone.png)": f"no such file: {tmp_path / 'gone.png'}"}


def test_a_local_parquet_dataset_of_odd_images(store: Store, tmp_path: Path) -> None:
    """A Hub-style dataset on disk (a parquet shard, as the Hub stores one), loaded offline by its folder:
    every odd image it carries is stored at its shown size or skipped by row with its reason."""
    from datasets import ClassLabel, Dataset, Features, Image as ImageFeature, Value

    src = build_odd_folder(tmp_path)
    names = ["cmyk.jpg", "exif6.jpg", "gray16.png", "animated.gif", "scan.tiff", "camera.jpg", "truncated.jpg",
             "text.png", "zero.jpg"]
    rows = [{"image": {"bytes": (src / n).read_bytes(), "path": n}, "label": i % 2, "caption": n}
            for i, n in enumerate(names)]
    rows.append({"image": None, "label": 0, "caption": "no image"})
    features = Features({"image": ImageFeature(), "label": ClassLabel(names=["cat", "dog"]),
                         "caption": Value("string")})
    (tmp_path / "hub" / "data").mkdir(parents=True)
    Dataset.from_list(rows, features=features).to_parquet(tmp_path / "hub" / "data" / "train-00000-of-00001.parquet")
    report = ingest_dataset(store, str(tmp_path / "hub"), tmp_path / "images", streaming=False,
                            suggestion_column="label")
    assert skipped_of(report) == {"train[6] (truncated.jpg)": "truncated", "train[7] (text.png)": "not an image",
                                  "train[8] (zero.jpg)": "empty file",
                                  "train[9]": "no image (neither bytes nor a path)"}
    shown = {r.metadata["caption"]: ((r.width, r.height), r.suggestion) for r in keys_of(store).values()}
    assert shown == {"cmyk.jpg": ((300, 200), "cat"), "exif6.jpg": ((100, 300), "dog"),
                     "gray16.png": ((300, 200), "cat"), "animated.gif": ((120, 80), "dog"),
                     "scan.tiff": ((300, 200), "cat"), "camera.jpg": ((300, 200), "dog")}


def test_a_small_mpo_is_served_as_the_jpeg_it_is(tmp_path: Path) -> None:
    picture = gradient(300, 200)
    buf = io.BytesIO()
    picture.save(buf, "MPO", save_all=True, append_images=[picture.rotate(180)])
    data = buf.getvalue()
    saved = save_original(data, tmp_path / "images")
    cache = ImageCache(tmp_path / "images", tmp_path / "cache", 1280)
    path = cache.prepare(saved.sha256, saved.path)
    assert path.suffix == ".jpg" and path.read_bytes() == data  # copied, not decoded and encoded again


# --- through the real app ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def odd_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The odd folder served by `python app.py` (password sign-in, overlap 1): every record walked once
    over HTTP, its display and zoomed renditions fetched; then the server stopped."""
    base = tmp_path_factory.mktemp("odd-app")
    src = build_odd_folder(base)
    users = add_users(base / "passwords.json", ["admin", "ann"])
    task = write_task(base / "task.toml", overlap=1, labels=["cat", "dog", "bird", "nested"])
    (base / "data").mkdir()
    server = start_app(base / "data", env={
        "AUTH_MODE": "password", "PASSWORD_FILE": str(base / "passwords.json"), "ADMINS": "admin",
        "SOURCE_DIR": str(src), "EXPORT_REPO": "", "TASK_FILE": str(task), "HF_HUB_OFFLINE": "1"})
    seen: dict[int, dict[str, Any]] = {}
    try:
        with ApiUser.with_password(server.url, "ann", users["ann"]) as api:
            view = api.next()
            while view["state"] == "ready" and len(seen) < 100:
                item = view["item"]
                shown = api.get(item["image_url"])
                path, query = item["image_url"].split("?", 1)
                large = api.get(f"{path}/large?{query}")
                seen[item["record_id"]] = {"item": item, "display": shown, "large": large}
                view = api.submit(item["record"], ["cat"])
            final_state = view["state"]
    finally:
        server.stop()
    db = Store(base / "data" / "annotator.duckdb")  # the record ids the page saw, by file name
    try:
        names = {r.id: r.source_key.removeprefix("folder:") for r in db.records(db.record_ids()).values()}
    finally:
        db.close()
    yield {"base": base, "seen": {names[i]: v for i, v in seen.items()}, "state": final_state,
           "log": server.log(), "task": task}


def decoded(response: Any) -> Image.Image:
    img = Image.open(io.BytesIO(response.content))
    img.load()
    return img


def test_the_app_starts_and_every_good_file_is_handed_out_rendered_at_its_shown_size(odd_app: dict[str, Any]
                                                                                     ) -> None:
    seen = odd_app["seen"]
    assert odd_app["state"] == "done" and set(seen) == set(SHOWN)
    for name, got in seen.items():
        width, height = SHOWN[name]
        assert (got["item"]["width"], got["item"]["height"]) == (width, height), name
        for kind, side in (("display", 1280), ("large", 2560)):
            response = got[kind]
            assert response.status_code == 200, (name, kind, response.text[:200])
            assert response.headers["content-type"] in ("image/jpeg", "image/png", "image/gif", "image/webp")
            img = decoded(response)
            w, h = img.size
            assert max(w, h) == min(max(width, height), side), (name, kind, img.size)
            assert abs(h - height * w / width) <= 1, (name, kind, img.size)  # the same shape, turned as shown


@pytest.mark.parametrize("name, red_at", [("exif6.jpg", "top"), ("exif8.jpg", "bottom")])
def test_exif_turned_photos_are_shown_upright(odd_app: dict[str, Any], name: str, red_at: str) -> None:
    for kind in ("display", "large"):
        img = decoded(odd_app["seen"][name][kind]).convert("RGB")
        top, bottom = img.getpixel((50, 10)), img.getpixel((50, 290))
        red, other = (top, bottom) if red_at == "top" else (bottom, top)
        assert red[0] > 180 and red[2] < 80 and other[2] > 180 and other[0] < 80, (name, kind, top, bottom)


def test_modes_browsers_get_wrong_are_converted(odd_app: dict[str, Any]) -> None:
    seen = odd_app["seen"]
    assert decoded(seen["cmyk.jpg"]["display"]).mode == "RGB"  # browsers show CMYK JPEGs inverted or not at all
    assert decoded(seen["scan.tiff"]["display"]).format == "JPEG"
    assert decoded(seen["paint.bmp"]["display"]).format == "JPEG"
    assert seen["camera.jpg"]["display"].headers["content-type"] == "image/jpeg"


def test_the_start_up_log_names_every_skipped_file_with_its_reason(odd_app: dict[str, Any]) -> None:
    log = odd_app["log"]
    assert f"{len(SHOWN)} added, 0 already present, {len(SKIPPED)} skipped" in log
    for item, reason in SKIPPED.items():
        assert f"  skipped {item}: {reason}\n" in log, item
    for noise in ("Thumbs.db", "desktop.ini", "__MACOSX", ".DS_Store", "._cmyk"):
        assert noise not in log
    assert "Traceback" not in log


def test_the_local_export_of_the_odd_records_loads_with_datasets(odd_app: dict[str, Any]) -> None:
    from datasets import load_dataset

    base = odd_app["base"]
    out = base / "export"
    env = {**os.environ, "DATA_DIR": str(base / "data"), "CACHE_DIR": str(base / "cache"),
           "TASK_FILE": str(odd_app["task"]), "HF_HUB_OFFLINE": "1", "EXPORT_REPO": ""}
    done = subprocess.run([sys.executable, "-m", "annotator", "export", "--out", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    records = load_dataset("parquet", data_files=str(out / "records.parquet"), split="train")
    rows = {r["source_key"].removeprefix("folder:"): r for r in records}
    assert set(rows) == set(SHOWN)
    for name, row in rows.items():
        assert row["image"].size == SHOWN[name] == (row["width"], row["height"]), name  # decoded, turned
        assert row["label"] == "cat" and row["status"] == "complete"
    assert json.loads(rows["cmyk.jpg"]["metadata"]) == {"label": "cat", "batch": "1", "notes": "first"}
    lines = [json.loads(line) for line in (out / "records.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {x["source_key"].removeprefix("folder:") for x in lines} == set(SHOWN)
    csv_text = (out / "records.csv").read_text(encoding="utf-8")
    for odd in ("日本.png", "café.jpg", "a#b.jpg", "50%.jpg", "what?.jpg", "with space.jpg"):
        assert f"folder:{odd}" in csv_text
