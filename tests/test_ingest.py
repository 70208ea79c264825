"""Ingest from a folder and from `datasets` datasets, into a real DuckDB file; no network."""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
from pathlib import Path

import pytest
from PIL import Image

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

from annotator import cli, ingest  # noqa: E402
from annotator.config import load_settings  # noqa: E402
from annotator.task import load_task, record_suggestion_column  # noqa: E402
from annotator.ingest import IngestError, ingest_dataset, ingest_folder, ingest_from_settings  # noqa: E402
from annotator.store import Store  # noqa: E402
from ingesthelpers import png  # noqa: E402
from ingesthelpers import store  # noqa: E402,F401,F811 - the fixture

REPO = Path(__file__).resolve().parent.parent


def jpeg(colour: tuple[int, int, int], size: tuple[int, int] = (20, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    (root / "cat").mkdir(parents=True)
    (root / "dog").mkdir()
    (root / "cat" / "a.png").write_bytes(png((255, 0, 0)))
    (root / "cat" / "b.jpg").write_bytes(jpeg((0, 255, 0)))
    (root / "dog" / "c.png").write_bytes(png((0, 0, 255)))
    (root / "dog" / "same-as-a.png").write_bytes(png((255, 0, 0)))  # duplicate content
    (root / "dog" / "broken.png").write_bytes(png((9, 9, 9))[:40])   # truncated
    (root / "notes.txt").write_text("not an image")
    (root / "loose.png").write_bytes(png((1, 2, 3)))                  # no class folder
    (root / ".DS_Store").write_bytes(b"\0junk")                        # hidden: ignored silently
    (root / "metadata.jsonl").write_text(
        json.dumps({"file_name": "cat/a.png", "source": "camera 1", "score": 0.5}) + "\n"
        + json.dumps({"file_name": "loose.png", "label": "bird"}) + "\n")
    return root


def by_key(store: Store) -> dict:
    return {r.source_key: r for r in store.records(store.record_ids()).values()}


def test_folder_ingest_copies_labels_and_reports_bad_files(store: Store, folder: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    report = ingest_folder(store, folder, images)

    assert report.added == 5
    assert report.already_present == 0
    skipped = dict(report.skipped)
    assert set(skipped) == {"dog/broken.png", "notes.txt"}
    assert skipped["dog/broken.png"] == "truncated or damaged"
    assert skipped["notes.txt"] == "not an image"
    assert "5 added" in report.summary()

    records = by_key(store)
    assert set(records) == {"folder:cat/a.png", "folder:cat/b.jpg", "folder:dog/c.png",
                            "folder:dog/same-as-a.png", "folder:loose.png"}
    a = records["folder:cat/a.png"]
    assert a.metadata == {"label": "cat", "source": "camera 1", "score": 0.5}
    assert a.suggestion == "cat"
    assert records["folder:dog/c.png"].suggestion == "dog"
    assert records["folder:loose.png"].metadata == {"label": "bird"}  # from metadata.jsonl only
    assert records["folder:loose.png"].suggestion == "bird"
    assert (a.width, a.height) == (24, 16)

    # byte-identical copies, content-addressed, duplicates stored once
    for key, record in records.items():
        original = (folder / key.removeprefix("folder:")).read_bytes()
        copy = images / record.image_path
        assert copy.read_bytes() == original
        assert record.sha256 == hashlib.sha256(original).hexdigest()
        assert record.image_path == f"{record.sha256[:2]}/{record.sha256}{copy.suffix}"
        assert record.size_bytes == len(original)
    assert records["folder:cat/b.jpg"].image_path.endswith(".jpg")
    assert records["folder:cat/a.png"].image_path == records["folder:dog/same-as-a.png"].image_path
    stored = [p for p in images.rglob("*") if p.is_file()]
    assert len(stored) == 4
    assert not [p for p in stored if p.name.startswith(".tmp")]


def test_folder_ingest_twice_adds_nothing(store: Store, folder: Path, tmp_path: Path, monkeypatch) -> None:
    images = tmp_path / "images"
    first = ingest_folder(store, folder, images)
    reads: list[str] = []
    real = ingest._read_file

    def spy(path: Path, root: Path | None) -> bytes:
        reads.append(path.name)
        return real(path, root)

    monkeypatch.setattr(ingest, "_read_file", spy)
    second = ingest_folder(store, folder, images)
    assert second.added == 0
    assert second.already_present == first.added
    assert store.record_count() == first.added
    assert set(reads) == {"metadata.jsonl", "broken.png", "notes.txt"}  # known images are not even read

    (folder / "dog" / "new.png").write_bytes(png((7, 7, 7)))
    third = ingest_folder(store, folder, images)
    assert third.added == 1
    assert by_key(store)["folder:dog/new.png"].id == max(store.record_ids())


def test_folder_without_suggestions_and_small_batches(store: Store, folder: Path, tmp_path: Path) -> None:
    report = ingest_folder(store, folder, tmp_path / "images", suggestion_column=None, batch_size=2)
    assert report.added == 5
    assert all(r.suggestion is None for r in by_key(store).values())
    assert by_key(store)["folder:dog/c.png"].metadata == {"label": "dog"}


def test_metadata_csv_and_custom_suggestion_column(store: Store, tmp_path: Path) -> None:
    root = tmp_path / "flat"
    root.mkdir()
    (root / "x.png").write_bytes(png((10, 20, 30)))
    (root / "y.png").write_bytes(png((30, 20, 10)))
    (root / "metadata.csv").write_text("file_name,guess,photographer\nx.png,square,ann\ny.png,,bob\n")
    report = ingest_folder(store, root, tmp_path / "images", suggestion_column="guess")
    assert report.added == 2 and not report.skipped
    records = by_key(store)
    assert records["folder:x.png"].metadata == {"guess": "square", "photographer": "ann"}
    assert records["folder:x.png"].suggestion == "square"
    assert records["folder:y.png"].suggestion == ""  # an empty cell is kept as given


def test_a_suggestion_field_of_boxes_is_no_missing_suggestion(store: Store, tmp_path: Path) -> None:
    """A boxes question's suggestions are lists of boxes, read per question: the ingest must not warn that
    no image has the field (the boxes example said so while every image had suggested boxes)."""
    root = tmp_path / "boxed"
    root.mkdir()
    (root / "x.png").write_bytes(png((10, 20, 30)))
    (root / "y.png").write_bytes(png((30, 20, 10)))
    boxes = [{"bbox": [1, 2, 5, 5], "category": "square"}]
    (root / "metadata.jsonl").write_text(json.dumps({"file_name": "x.png", "boxes": boxes}) + "\n")
    report = ingest_folder(store, root, tmp_path / "images", suggestion_column="boxes")
    assert report.added == 2 and not report.warnings, report.warnings
    assert by_key(store)["folder:x.png"].metadata == {"boxes": boxes}
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "z.png").write_bytes(png((5, 5, 5)))
    assert ingest_folder(store, bare, tmp_path / "images", suggestion_column="boxes").warnings == [
        "no image has a 'boxes' field, so none has a suggestion (put images in class sub-folders or add a "
        "metadata.jsonl)"]


def test_path_tricks_are_harmless(store: Store, tmp_path: Path) -> None:
    outside = tmp_path / "secret.png"
    outside.write_bytes(png((5, 5, 5)))
    root = tmp_path / "tricky"
    (root / "sub").mkdir(parents=True)
    evil = "evil\\..\\..\\name; rm -rf $HOME.png"
    (root / "sub" / evil).write_bytes(png((6, 6, 6)))
    (root / "sub" / "ok.png").write_bytes(png((7, 7, 7)))
    (root / "sub" / "..\\..\\hidden.png").write_bytes(png((8, 8, 8)))  # starts with a dot: hidden, left out
    (root / "metadata.jsonl").write_text(
        json.dumps({"file_name": "../secret.png", "x": 1}) + "\n"
        + json.dumps({"file_name": "..\\secret.png", "x": 2}) + "\n"
        + json.dumps({"file_name": "/etc/passwd", "x": 3}) + "\n"
        + json.dumps({"file_name": "sub/../sub/ok.png", "note": "ok"}) + "\n"
        + "{not json\n")
    images = tmp_path / "images"
    report = ingest_folder(store, root, images)
    assert report.added == 2
    records = by_key(store)
    assert set(records) == {"folder:sub/" + evil, "folder:sub/ok.png"}
    assert records["folder:sub/ok.png"].metadata == {"label": "sub", "note": "ok"}
    record = records["folder:sub/" + evil]
    assert record.metadata == {"label": "sub"}
    # the stored name comes from the content hash only
    assert record.image_path == f"{record.sha256[:2]}/{record.sha256}.png"
    assert (images / record.image_path).read_bytes() == (root / "sub" / evil).read_bytes()
    assert sorted(p.name for p in tmp_path.rglob("*name*")) == [evil]
    reasons = " ".join(f"{n}: {r}" for n, r in report.skipped)
    assert "'../secret.png' is outside" in reasons and "'/etc/passwd' is outside" in reasons
    assert "'..\\\\secret.png' is outside" in reasons
    assert "metadata.jsonl line 5: not valid JSON" in reasons
    assert len(report.skipped) == 4


def test_images_dir_inside_the_source_is_not_ingested(store: Store, tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "shapes").mkdir(parents=True)
    (root / "shapes" / "a.png").write_bytes(png((1, 1, 1)))
    ingest_folder(store, root, root / "images")
    assert (root / "images").is_dir()
    report = ingest_folder(store, root, root / "images")
    assert report.added == 0 and report.already_present == 1 and not report.skipped


def test_missing_folder_or_source_inside_images_dir_is_a_clear_error(store: Store, tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="not a folder"):
        ingest_folder(store, tmp_path / "nope", tmp_path / "images")
    (tmp_path / "images" / "uploads").mkdir(parents=True)
    for source in (tmp_path / "images", tmp_path / "images" / "uploads"):
        with pytest.raises(IngestError, match="inside .* where ingest keeps its own copies"):
            ingest_folder(store, source, tmp_path / "images")


# --- datasets -----------------------------------------------------------------

@pytest.fixture
def local_dataset(tmp_path: Path):
    from datasets import ClassLabel, Dataset, Features, Image as ImageFeature, List, Value

    src = tmp_path / "ds"
    src.mkdir()
    paths = []
    for i, colour in enumerate([(200, 0, 0), (0, 200, 0), (0, 0, 200)]):
        path = src / f"img{i}.png"
        path.write_bytes(png(colour, (10 + i, 12)))
        paths.append(str(path))
    features = Features({"image": ImageFeature(), "label": ClassLabel(names=["circle", "square", "triangle"]),
                         "tags": List(ClassLabel(names=["red", "green", "blue"])), "note": Value("string"),
                         "raw": Value("binary")})
    ds = Dataset.from_dict({"image": paths, "label": [0, 2, 1], "tags": [[0], [1, 2], []],
                            "note": ["a", None, "c"], "raw": [b"x", b"y", b"z"]}, features=features)
    return ds, paths


def test_dataset_ingest_copies_bytes_and_names_classes(store: Store, tmp_path: Path, local_dataset) -> None:
    ds, paths = local_dataset
    images = tmp_path / "images"
    report = ingest_dataset(store, ds, images, name="me/shapes", suggestion_column="label")
    assert report.added == 3 and not report.skipped
    records = by_key(store)
    assert set(records) == {f"hub:me/shapes:default:train:{i}" for i in range(3)}
    first = records["hub:me/shapes:default:train:0"]
    assert first.metadata == {"label": "circle", "tags": ["red"], "note": "a"}  # binary column left out
    assert first.suggestion == "circle"
    assert records["hub:me/shapes:default:train:1"].metadata["tags"] == ["green", "blue"]
    assert records["hub:me/shapes:default:train:1"].suggestion == "triangle"
    for i, path in enumerate(paths):
        record = records[f"hub:me/shapes:default:train:{i}"]
        assert (images / record.image_path).read_bytes() == Path(path).read_bytes()
        assert record.width == 10 + i

    again = ingest_dataset(store, ds, images, name="me/shapes", suggestion_column="label")
    assert again.added == 0 and again.already_present == 3


def test_iterable_dataset_with_bytes_and_a_bad_row(store: Store, tmp_path: Path, local_dataset) -> None:
    from datasets import Dataset, Features, Image as ImageFeature, Value

    ds, _ = local_dataset
    report = ingest_dataset(store, ds.to_iterable_dataset(), tmp_path / "images", name="it", split="test")
    assert report.added == 3
    assert all(r.suggestion is None for r in by_key(store).values())  # no suggestion_column given

    good = png((1, 100, 1))
    inline = Dataset.from_dict(
        {"image": [{"bytes": good, "path": "../../etc/x.png"}, {"bytes": b"GIF89a broken", "path": "bad.gif"}],
         "caption": ["fine", "broken"]},
        features=Features({"image": ImageFeature(), "caption": Value("string")}))
    report = ingest_dataset(store, inline.to_iterable_dataset(), tmp_path / "images", name="inline",
                            suggestion_column="caption")
    assert report.added == 1
    assert len(report.skipped) == 1 and report.skipped[0][0] == "train[1] (bad.gif)"
    record = by_key(store)["hub:inline:default:train:0"]
    assert (tmp_path / "images" / record.image_path).read_bytes() == good
    assert record.suggestion == "fine"
    assert not (tmp_path / "etc").exists()


def test_dataset_by_name_through_load_dataset(store: Store, tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    for label, colour in (("circle", (1, 1, 1)), ("square", (2, 2, 2))):
        (root / label).mkdir(parents=True)
        (root / label / f"{label}.png").write_bytes(png(colour))
    report = ingest_dataset(store, "imagefolder", tmp_path / "images", data_dir=str(root),
                            suggestion_column="label")
    assert report.added == 2
    assert sorted(r.suggestion for r in by_key(store).values()) == ["circle", "square"]
    assert "hub:imagefolder:default:train:0" in store.source_keys()


def test_dataset_errors_name_the_problem(store: Store, tmp_path: Path, local_dataset) -> None:
    ds, _ = local_dataset
    with pytest.raises(IngestError, match="no column 'picture'"):
        ingest_dataset(store, ds, tmp_path / "images", image_column="picture")
    with pytest.raises(IngestError, match="cannot load the dataset"):
        ingest_dataset(store, "nobody/no-such-dataset-here", tmp_path / "images")
    report = ingest_dataset(store, ds, tmp_path / "images", suggestion_column="nope")
    assert report.added == 3 and "no column 'nope'" in report.summary()


# --- the shipped sample, settings and the command -------------------------------

def test_the_shipped_sample_ingests(store: Store, tmp_path: Path) -> None:
    task = load_task(REPO / "data" / "task.toml")
    assert record_suggestion_column(task) == "label" and task.overlap == 2
    report = ingest_folder(store, REPO / "data" / "images", tmp_path / "images",
                           suggestion_column=record_suggestion_column(task), progress=True)
    assert 90 <= report.added <= 110 and not report.skipped
    records = by_key(store).values()
    assert {r.suggestion for r in records} == {"circle", "square", "triangle"}
    assert all(r.metadata["label"] == r.suggestion for r in records)
    assert all(160 <= r.width <= 320 and 120 <= r.height <= 240 for r in records)


def test_ingest_from_settings_uses_source_dir(store: Store, folder: Path, tmp_path: Path) -> None:
    settings = load_settings({"DATA_DIR": str(tmp_path / "data"), "SOURCE_DIR": str(folder)})
    task = load_task(REPO / "data" / "task.toml")
    report = ingest_from_settings(store, settings, task)
    assert report.added == 5
    assert (settings.images_dir / by_key(store)["folder:cat/a.png"].image_path).is_file()


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    cli.add_ingest(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.run(args)


def test_ingest_command(folder: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    data = tmp_path / "data"
    monkeypatch.setenv("DATA_DIR", str(data))
    monkeypatch.setenv("TASK_FILE", str(REPO / "data" / "task.toml"))
    for name in ("SOURCE_DIR", "SOURCE_DATASET", "DB_MODE"):
        monkeypatch.delenv(name, raising=False)
    assert run_cli(["ingest", "--folder", str(folder), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "5 added" in out
    assert "skipped dog/broken.png" in out and "skipped notes.txt: not an image" in out
    assert run_cli(["ingest", "--folder", str(folder), "--no-progress"]) == 0
    assert "0 added, 5 already present" in capsys.readouterr().out
    store = Store(data / "annotator.duckdb")
    try:
        assert store.record_count() == 5
    finally:
        store.close()
