"""The ready-to-train configs of the Hub export: pushed beside `records` and `responses` in one commit to the
stand-in Hub, loaded back with `datasets` (ClassLabel names from the task, ties left out and counted,
multi-label lists, rating median/mean/count, one row per caption), listed in the card, and ignored by
restore, which still gives back the same store.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))

import pytest  # noqa: E402
import yaml  # noqa: E402
from test_export import REPO, T0, add_images, export_commits, fill, hub, make_settings, make_task  # noqa: E402,F401
from test_export_questions import _responses  # noqa: E402

from annotator.export.hub import Exporter  # noqa: E402
from annotator.export.restore import restore_from_hub  # noqa: E402
from annotator.export.train_configs import owned_folder, train_configs  # noqa: E402
from annotator.model import ResponseWrite  # noqa: E402
from annotator.store import Store  # noqa: E402
from annotator.task import Label, Question, TaskSpec  # noqa: E402

ANIMAL = Question("animal", "Which animal?", "label", labels=(Label("cat", "1"), Label("dog", "2"), Label("bird", "3")))
TAGS = Question("tags", "What is in it?", "labels", labels=(Label("grass", "g"), Label("sky", "k"), Label("toy", "t")))
QUALITY = Question("quality", "How sharp?", "rating", low=1, high=5, low_word="blurry", high_word="sharp")
CAPTION = Question("caption", "Describe it", "text", required=False, max_chars=200)
FOUR = TaskSpec(title="Four questions", guidelines="", comment=True, overlap=2, order="sequential", seed=0,
                questions=(ANIMAL, TAGS, QUALITY, CAPTION))
# (record index, user, status, answer, minutes after T0)
TYPED = [
    # record 0: animal cat 2-1; tags: sky 3 of 3, grass and toy 1 of 3 -> [sky]; quality 4, 5, 2; one caption
    # and one blank one
    (0, "alice", "submitted", {"animal": "cat", "tags": ["grass", "sky"], "quality": 4, "caption": "un chat été"}, 1),
    (0, "bob", "submitted", {"animal": "cat", "tags": ["sky"], "quality": 5}, 2),
    (0, "carol", "submitted", {"animal": "dog", "tags": ["sky", "toy"], "quality": 2, "caption": "   "}, 3),
    # record 1: animal tied, tags tied (toy 1 of 2); quality 2, 3; two captions
    (1, "alice", "submitted", {"animal": "dog", "tags": [], "quality": 2, "caption": "a dog"}, 4),
    (1, "bob", "submitted", {"animal": "cat", "tags": ["toy"], "quality": 3, "caption": "a small dog"}, 5),
    # record 2: only a skip
    (2, "carol", "skipped", {}, 6),
    # record 3: one answer, two tags given in the other order than the task's
    (3, "dave", "submitted", {"animal": "bird", "tags": ["toy", "grass"], "quality": 1}, 7),
]

_LOAD = r"""
import hashlib, json, sys
from datasets import Image, load_dataset
repo, names = sys.argv[1], sys.argv[2:]
out = {}
for name in names:
    ds = load_dataset(repo, name, split="train")
    features = ds.features
    if "image" in features:
        ds = ds.cast_column("image", Image(decode=False))
    label = features.get("label")
    out[name] = {
        "features": {k: repr(v) for k, v in features.items()},
        "label_names": None if label is None else getattr(label, "names", None) or label.feature.names,
        "rows": [{k: hashlib.sha256(v["bytes"]).hexdigest() if k == "image" else v for k, v in row.items()}
                 for row in ds]}
print(json.dumps(out, default=str))
"""


def _load(hub, tmp_path: Path, *names: str) -> dict:
    proc = hub.run_python(_LOAD, tmp_path / "client", args=[REPO, *names], timeout=200)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _front_matter(card: str) -> dict:
    return yaml.safe_load(card.split("---\n")[1])


def _push(store: Store, task: TaskSpec, settings, hub) -> None:
    exporter = Exporter(store, task, settings, endpoint=hub.endpoint)
    try:
        exporter.push_now()
    finally:
        exporter.stop(final_push=False)


def test_config_names_and_owned_folders() -> None:
    assert [c.name for c in train_configs(FOUR)] == ["classification_animal", "classification_tags", "rating",
                                                    "captions"]
    assert [c.name for c in train_configs(make_task())] == ["classification"]
    assert all(owned_folder(f) for f in ("records", "responses", "classification", "classification_animal",
                                         "rating", "captions_caption"))
    assert not any(owned_folder(f) for f in ("data", "images", "classifications", "ratings"))


def test_four_kinds_pushed_in_one_commit_load_as_ready_to_train_and_restore(hub, tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "a")
    source = Store(settings.db_path)
    try:
        ids = add_images(source, settings, 4)
        for rec, user, status, answer, minute in TYPED:
            source.apply([ResponseWrite(ids[rec], user, status, answer, None, 100, T0 + timedelta(minutes=minute))])
        sha = {i: source.record(i).sha256 for i in ids}  # the hash of each original image's bytes
        _push(source, FOUR, settings, hub)

        # one commit holds everything, on top of the repo's initial commit
        commits = hub.commits(REPO)
        assert len(export_commits(hub)) == 1 and commits[-1] is not None and len(commits) == 2
        configs = ["records", "responses", "classification_animal", "classification_tags", "rating", "captions"]
        added = set(commits[-1].files) - set(commits[0].files)
        assert added == {"README.md", *(f"{c}/train-00000-of-00001.parquet" for c in configs)}

        card = commits[-1].files["README.md"].decode()
        front = _front_matter(card)
        assert [c["config_name"] for c in front["configs"]] == configs
        assert front["task_categories"] == ["image-classification", "image-to-text"]
        for name in configs[2:]:
            assert f'load_dataset("{REPO}", "{name}", split="train")' in card
        assert "### `classification_animal`" in card
        assert "**2 rows**; left out: tied records: 1, records without an answer: 1." in card
        assert "### `captions`" in card and "**3 rows**; left out: empty answers: 1." in card

        data = _load(hub, tmp_path, *configs[1:])
        animal, tags, rating, captions = (data[c] for c in configs[2:])
        assert animal["label_names"] == ["cat", "dog", "bird"]  # the task's, in task order (dog is never a row)
        assert animal["features"]["label"].startswith("ClassLabel(")
        assert [(r["record_id"], r["label"], r["image"]) for r in animal["rows"]] == [
            (ids[0], 0, sha[ids[0]]), (ids[3], 2, sha[ids[3]])]  # record 1 tied, record 2 unanswered
        assert tags["label_names"] == ["grass", "sky", "toy"]
        assert tags["features"]["label"].startswith("List(ClassLabel(")
        assert [(r["record_id"], r["label"]) for r in tags["rows"]] == [(ids[0], [1]), (ids[3], [0, 2])]
        assert [(r["record_id"], r["rating_median"], r["num_ratings"], r["image"]) for r in rating["rows"]] == [
            (ids[0], 4.0, 3, sha[ids[0]]), (ids[1], 2.5, 2, sha[ids[1]]), (ids[3], 1.0, 1, sha[ids[3]])]
        assert [r["rating_mean"] for r in rating["rows"]] == pytest.approx([11 / 3, 2.5, 1.0])
        assert sorted((r["record_id"], r["text"], r["image"]) for r in captions["rows"]) == [
            (ids[0], "un chat été", sha[ids[0]]), (ids[1], "a dog", sha[ids[1]]),
            (ids[1], "a small dog", sha[ids[1]])]
        assert data["responses"]["features"]["created_at"] == "Value('timestamp[us, tz=UTC]')"
        first = min(data["responses"]["rows"], key=lambda r: r["created_at"])
        assert first["created_at"].startswith("2025-05-01 12:01:00") and first["created_at"].endswith("+00:00")

        target_settings = make_settings(tmp_path / "b")
        target = Store(target_settings.db_path)
        try:
            report = restore_from_hub(target, target_settings, FOUR, endpoint=hub.endpoint)
            assert report is not None and (report.records, report.responses) == (4, len(TYPED))
            assert _responses(target) == _responses(source)  # the UTC times come back as the store keeps them
            assert target.export_fingerprint() == source.export_fingerprint()
        finally:
            target.close()
    finally:
        source.close()


def test_one_question_config_and_a_reexport_deletes_configs_that_no_longer_exist(hub, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    store = Store(settings.db_path)
    try:
        ids = fill(store, settings)  # records: 0 cat, 1 tied, 2 dog, 3 bird, 4 a skip only, 5 nothing
        _push(store, make_task(), settings, hub)
        files = hub.files(REPO)
        assert "classification/train-00000-of-00001.parquet" in files
        front = _front_matter(files["README.md"].decode())
        assert [c["config_name"] for c in front["configs"]] == ["records", "responses", "classification"]
        assert front["task_categories"] == ["image-classification"]
        data = _load(hub, tmp_path, "classification")["classification"]
        assert data["label_names"] == ["cat", "dog", "bird"]
        assert [(r["record_id"], r["label"]) for r in data["rows"]] == [(ids[0], 0), (ids[2], 1), (ids[3], 2)]
        assert "left out: tied records: 1, records without an answer: 2." in files["README.md"].decode()

        # the task gains a second label question: its configs are named after the questions; the new one has
        # no answers, so it is not published (an empty config would not load), and `classification/` goes
        other = Question("other", "Anything else?", "label", required=False, labels=(Label("yes", "y"),))
        two = TaskSpec(title="Two", guidelines="", comment=True, overlap=2, order="sequential", seed=0,
                       questions=(make_task().questions[0], other))
        _push(store, two, settings, hub)
        assert len(export_commits(hub)) == 2
        files = hub.files(REPO)
        assert not any(p.startswith("classification/") for p in files)
        assert not any(p.startswith("classification_other/") for p in files)
        assert "classification_label/train-00000-of-00001.parquet" in files
        card = files["README.md"].decode()
        assert [c["config_name"] for c in _front_matter(card)["configs"]] == ["records", "responses",
                                                                             "classification_label"]
        assert "Not published in this export, for want of rows: `classification_other`" in card
    finally:
        store.close()
