"""Export: tables, dataset card, pushes to a fake Hub (read back with `datasets`), schedule, local files.

Environment (see tests/test_fakehub.py): in-process clients get the endpoint and
token explicitly and the two import-time huggingface_hub constants read at call
time are patched; `load_dataset` from the fake Hub runs in a subprocess whose
environment (`hub.client_env`) is set before it imports anything.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import hashlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import random  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402
from datetime import datetime, timedelta, timezone  # noqa: E402
from pathlib import Path  # noqa: E402

import huggingface_hub.constants  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from annotator import metrics  # noqa: E402
from annotator.config import Settings, load_settings  # noqa: E402
from annotator.task import Label, TaskSpec, classification_task  # noqa: E402
from annotator.export.card import dataset_card  # noqa: E402
from annotator.export.hub import ExportError, Exporter, ExporterClosedError  # noqa: E402
from annotator.export.local import export_local  # noqa: E402
from annotator.export.summary import AlphaAccumulator  # noqa: E402
from annotator.export.tables import build_tables  # noqa: E402
from annotator.model import NewRecord, ReopenWrite, ResponseWrite, StoreError  # noqa: E402
from annotator.store import Store  # noqa: E402
from fakehub import FakeHub  # noqa: E402

TOKEN = "hf_exportSecretToken0123456789abcdef"
REPO = "tester/results"
T0 = datetime(2025, 5, 1, 12, 0, 0)

# (record index, user, status, answer, comment, time_spent_ms, minutes after T0)
ANSWERS = [
    (0, "alice", "submitted", {"label": "cat"}, None, 1200, 1),
    (0, "bob", "submitted", {"label": "cat"}, "easy", 800, 2),
    (1, "alice", "submitted", {"label": "dog"}, None, 900, 3),      # replaced below by "cat"
    (1, "bob", "submitted", {"label": "dog"}, None, 700, 4),
    (2, "alice", "submitted", {"label": "dog"}, None, 1000, 5),
    (2, "bob", "skipped", {}, None, 300, 6),
    (2, "carol", "submitted", {"label": "dog"}, "blurry", 1500, 7),
    (3, "alice", "submitted", {"label": "bird"}, None, 400, 8),
    (4, "bob", "skipped", {}, None, 200, 9),
    (1, "alice", "submitted", {"label": "cat"}, "changed my mind", 2000, 10),
]
COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (30, 200, 200), (200, 30, 200)]


def png(colour: tuple[int, int, int], size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


def make_task(kind: str = "single_label", overlap: int = 2) -> TaskSpec:
    return classification_task("Pets | test", (Label("cat", "1"), Label("dog", "2"), Label("bird", "3")),
                               guidelines="Pick the animal.\n\n---\nWhen unsure, skip.", question="Which animal?",
                               kind=kind, comment=True, overlap=overlap)


def make_settings(root: Path, **changes: object) -> Settings:
    env = {"DATA_DIR": str(root / "data"), "CACHE_DIR": str(root / "cache"), "EXPORT_REPO": REPO,
           "HF_TOKEN": TOKEN, "AUTH_MODE": "local", "TASK_FILE": str(root / "task.toml")}
    return replace(load_settings(env), **changes)  # type: ignore[arg-type]


def add_images(store: Store, settings: Settings, n: int, start: int = 0) -> list[int]:
    rows = []
    for i in range(start, start + n):
        data = png(COLOURS[i % len(COLOURS)], (10 + i, 8 + i))
        sha = hashlib.sha256(data).hexdigest()
        rel = f"{sha[:2]}/{sha}.png"
        (settings.images_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (settings.images_dir / rel).write_bytes(data)
        rows.append(NewRecord(f"folder:img{i}.png", rel, sha, 10 + i, 8 + i, len(data),
                              {"n": i, "note": "é"}, "cat" if i % 2 == 0 else None))
    return store.add_records(rows)


def fill(store: Store, settings: Settings) -> list[int]:
    """Six records; answers from ANSWERS; one more answer wanted on record 0 (so it is partial)."""
    ids = add_images(store, settings, 6)
    for rec, user, status, answer, comment, spent, minute in ANSWERS:
        store.apply([ResponseWrite(ids[rec], user, status, answer, comment, spent, T0 + timedelta(minutes=minute))])
    store.apply([ReopenWrite(ids[0], 1)])
    return ids


@pytest.fixture
def hub(monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with FakeHub(token=TOKEN) as h:
        yield h
        assert h.server_errors == [], h.server_errors[0]


@pytest.fixture
def env(tmp_path):
    settings = make_settings(tmp_path)
    store = Store(settings.db_path)
    yield settings, store
    store.close()


def export_commits(hub: FakeHub, repo: str = REPO) -> list:
    if not hub.repo_exists(repo):
        return []
    return [c for c in hub.commits(repo) if c.message.startswith("annotator export")]


def wait_for(predicate, timeout: float = 20.0, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


# --------------------------------------------------------------------------- tables

def test_build_tables_rows_and_summary(env):
    settings, store = env
    ids = fill(store, settings)
    tables = build_tables(store, make_task(), settings.images_dir, shard_rows=4)
    shards = list(tables)
    assert len(shards) == 2  # 6 records in shards of 4
    records = [row for s in shards for row in s.records.to_pylist()]
    responses = [row for s in shards for row in s.responses.to_pylist()]
    by_id = {r["record_id"]: r for r in records}
    assert [r["record_id"] for r in records] == ids
    r0, r1, r2, r3, r4, r5 = (by_id[i] for i in ids)
    assert (r0["label"], r0["tied"], r0["agreement"], r0["n_answers"], r0["status"]) == \
        ("cat", [], {"label": 1.0}, 2, "partial")
    assert r0["extra_answers"] == 1
    assert (r1["label"], r1["tied"], r1["agreement"], r1["status"]) == (
        None, [{"question": "label", "label": "cat"}, {"question": "label", "label": "dog"}], {"label": 0.0}, "complete")
    assert [(a["annotator"], a["answer"]) for a in r1["answers"]] == [("alice", {"label": "cat"}),
                                                                      ("bob", {"label": "dog"})]
    assert (r2["label"], r2["n_answers"], r2["n_skipped"], r2["status"]) == ("dog", 2, 1, "complete")
    assert [a["annotator"] for a in r2["answers"]] == ["alice", "carol"]
    assert (r3["label"], r3["agreement"], r3["status"]) == ("bird", {"label": None}, "partial")
    assert (r4["label"], r4["n_skipped"], r4["status"]) == (None, 1, "untouched")
    assert (r5["n_answers"], r5["status"], r5["answers"]) == (0, "untouched", [])
    assert json.loads(r0["metadata"]) == {"n": 0, "note": "é"} and r0["suggestion"] == "cat"
    original = (settings.images_dir / store.record(ids[2]).image_path).read_bytes()
    assert r2["image"]["bytes"] == original
    assert len(responses) == 9 and sum(r["status"] == "skipped" for r in responses) == 2
    alice_r1 = next(r for r in responses if r["record_id"] == ids[1] and r["annotator"] == "alice")
    assert alice_r1["label"] == "cat" and alice_r1["comment"] == "changed my mind"
    assert all(r["label"] is None for r in responses if r["status"] == "skipped")
    utc = timezone.utc  # the export says its times are UTC; the store keeps them naive
    assert alice_r1["created_at"] == (T0 + timedelta(minutes=3)).replace(tzinfo=utc)
    assert alice_r1["updated_at"] == (T0 + timedelta(minutes=10)).replace(tzinfo=utc)

    s = tables.summary
    assert (s.records, s.submitted, s.skipped, len(s.annotators)) == (6, 7, 2, 3)
    assert s.status == {"complete": 2, "partial": 2, "untouched": 2}
    assert s.questions["label"].answer_counts == {"cat": 3, "dog": 3, "bird": 1}
    units = {i: [r.answer["label"] for r in store.record_responses(i) if r.status == "submitted"] for i in ids}
    assert s.questions["label"].alpha == metrics.krippendorff_alpha_nominal(units)


def test_multi_label_majority_and_agreement(env):
    settings, store = env
    ids = add_images(store, settings, 2)
    for user, answer in (("a", ("cat", "dog")), ("b", ("cat",)), ("c", ("cat", "bird")), ("d", ("dog",))):
        store.apply([ResponseWrite(ids[0], user, "submitted", {"labels": list(answer)}, None, 10, T0)])
    task = make_task("multi_label", overlap=3)
    tables = build_tables(store, task, settings.images_dir)
    row = next(iter(tables)).records.to_pylist()[0]
    # cat 3/4, dog 2/4 (tied), bird 1/4
    assert row["labels"] == ["cat"] and row["tied"] == [{"question": "labels", "label": "dog"}]
    sets = [frozenset(a) for a in (("cat", "dog"), ("cat",), ("cat", "bird"), ("dog",))]
    assert row["agreement"]["labels"] == pytest.approx(
        metrics.record_agreement_multi(sets, task.questions[0].label_names))
    assert row["status"] == "complete"
    card = dataset_card(task, tables.summary, REPO)
    assert "| cat | 3 | 1 |" in card


def test_alpha_accumulator_matches_metrics():
    rng = random.Random(7)
    units = {i: [rng.choice("abcd") if rng.random() > 0.1 else None for _ in range(rng.randint(0, 5))]
             for i in range(300)}
    acc = AlphaAccumulator()
    for values in units.values():
        acc.add(values)
    expected = metrics.krippendorff_alpha_nominal(units)
    got = acc.result()
    assert got.n_records == expected.n_records and got.n_answers == expected.n_answers
    assert got.value == pytest.approx(expected.value, abs=1e-12)
    one = AlphaAccumulator()
    one.add(["a", "a"])
    assert one.result().value is None  # a single value throughout: undefined, as in metrics


# --------------------------------------------------------------------------- push + load_dataset

_LOAD_BACK = r"""
import json, sys
from datasets import load_dataset
repo = sys.argv[1]
recs = load_dataset(repo, "records", split="train")
resp = load_dataset(repo, "responses", split="train")
out = {"records": [], "responses": resp.to_list(), "features": str(recs.features["image"])}
for row in recs:
    img = row.pop("image")
    row["pixel"] = list(img.convert("RGB").getpixel((0, 0)))
    row["size"] = list(img.size)
    out["records"].append(row)
print(json.dumps(out, default=str))
"""


def test_push_then_load_dataset_both_configs(hub, env, tmp_path):
    settings, store = env
    ids = fill(store, settings)
    task = make_task()
    exporter = Exporter(store, task, settings, endpoint=hub.endpoint, retry_initial=0.05)
    try:
        result = exporter.trigger().result(timeout=60)
    finally:
        exporter.stop()
    assert result.pushed and result.records == 6 and result.responses == 9
    assert hub.repo(REPO)["private"] is True
    files = hub.files(REPO)
    assert {"README.md", "records/train-00000-of-00001.parquet", "responses/train-00000-of-00001.parquet"} <= set(files)
    status = exporter.status()
    assert status.last_result == "pushed" and status.pushes == 1 and status.rows_done == status.rows_total == 6

    card = files["README.md"].decode()
    assert "# Pets | test" in card and "exported by annotator" in card.lower()
    assert "| cat | 3 | 1 |" in card and "| dog | 3 | 1 |" in card and "| bird | 1 | 1 |" in card
    assert "by 3 annotators" in card and "2 complete, 2 partly done, 2 untouched" in card
    units = {i: [r.answer["label"] for r in store.record_responses(i) if r.status == "submitted"] for i in ids}
    alpha = metrics.krippendorff_alpha_nominal(units)
    assert f"{alpha.value:.3f} over {alpha.n_records} records" in card
    assert "When unsure, skip." in card and TOKEN not in card

    proc = hub.run_python(_LOAD_BACK, tmp_path / "client", args=[REPO], timeout=150)
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    assert data["features"].startswith("Image(")
    records = {r["record_id"]: r for r in data["records"]}
    assert sorted(records) == ids
    for n, rid in enumerate(ids):
        rec, row = store.record(rid), records[rid]
        assert row["pixel"] == list(COLOURS[n % len(COLOURS)]) and row["size"] == [rec.width, rec.height]
        submitted = [r for r in store.record_responses(rid) if r.status == "submitted"]
        vote = metrics.majority([r.answer["label"] for r in submitted])
        assert row["label"] == vote.label and [t["label"] for t in row["tied"]] == list(vote.tied)
        assert row["agreement"] == {"label": metrics.record_agreement([r.answer["label"] for r in submitted])}
        assert row["n_answers"] == len(submitted)
        assert [(a["annotator"], a["answer"]) for a in row["answers"]] == [(r.user_id, r.answer) for r in submitted]
    assert [records[i]["status"] for i in ids] == ["partial", "complete", "complete", "partial", "untouched", "untouched"]
    got = sorted((r["record_id"], r["annotator"], r["status"], r["label"] or "") for r in data["responses"])
    want = sorted((r.record_id, r.user_id, r.status, r.answer.get("label", "")) for i in ids
                  for r in store.record_responses(i))
    assert got == want


# --------------------------------------------------------------------------- schedule, retries, coalescing

def test_scheduled_export_only_after_changes_and_retry_reported(hub, env):
    settings, store = env
    settings = replace(settings, export_every=0.01)  # 0.6 s
    ids = fill(store, settings)
    exporter = Exporter(store, make_task(), settings, endpoint=hub.endpoint, retry_initial=0.4)
    exporter.start()
    try:
        assert wait_for(lambda: len(export_commits(hub)) == 1)
        time.sleep(2.0)  # three intervals without a change
        assert len(export_commits(hub)) == 1
        assert exporter.status().last_result == "pushed" and exporter.status().pushes == 1

        hub.fail_next(1, status=500, path_contains="/commit/")
        store.apply([ResponseWrite(ids[5], "dave", "submitted", {"label": "bird"}, None, 50, T0 + timedelta(hours=1))])
        assert wait_for(lambda: exporter.status().state == "retrying", step=0.005)
        failed = exporter.status()
        assert "500" in failed.last_error and failed.attempts == 1
        assert wait_for(lambda: len(export_commits(hub)) == 2)
        assert wait_for(lambda: exporter.status().pushes == 2)
        done = exporter.status()
        assert done.last_error is None and done.attempts == 2 and done.pushes == 2
        assert b"dave" in hub.files(REPO)["responses/train-00000-of-00001.parquet"]
    finally:
        exporter.stop()
    assert len(export_commits(hub)) == 2  # nothing changed since: no final push


def test_concurrent_triggers_make_one_export_and_stop_pushes_last_changes(hub, env):
    settings, store = env
    ids = fill(store, settings)
    exporter = Exporter(store, make_task(), settings, endpoint=hub.endpoint)
    barrier = threading.Barrier(8)
    futures = []

    def ask() -> None:
        barrier.wait()
        futures.append(exporter.trigger())

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results = [f.result(timeout=60) for f in futures]
    assert len(export_commits(hub)) == 1
    assert sum(r.pushed for r in results) >= 1
    again = exporter.trigger().result(timeout=30)
    assert not again.pushed and len(export_commits(hub)) == 1

    store.apply([ResponseWrite(ids[4], "erin", "submitted", {"label": "cat"}, None, 10, T0 + timedelta(hours=2))])
    exporter.stop()
    assert len(export_commits(hub)) == 2  # the final push
    assert b"erin" in hub.files(REPO)["responses/train-00000-of-00001.parquet"]
    with pytest.raises(ExporterClosedError):
        exporter.trigger()
    exporter.stop()  # idempotent


def test_stale_files_removed_and_empty_store_never_pushed(hub, env):
    settings, store = env
    exporter = Exporter(store, make_task(), settings, endpoint=hub.endpoint, file_bytes=1, shard_rows=2)
    assert not exporter.trigger().result(timeout=30).pushed  # no records: nothing pushed
    assert not hub.repo_exists(REPO)
    fill(store, settings)
    exporter.trigger().result(timeout=60)
    many = [p for p in hub.files(REPO) if p.startswith("records/")]
    assert len(many) > 1  # one file per shard with file_bytes=1
    exporter.stop(final_push=False)
    again = Exporter(store, make_task(), settings, endpoint=hub.endpoint)
    assert not again.trigger().result(timeout=30).pushed  # state file: this state is already on the Hub
    again.push_now()
    assert [p for p in hub.files(REPO) if p.startswith("records/")] == ["records/train-00000-of-00001.parquet"]
    again.stop()


def test_store_failure_is_reported_in_status(hub, env, monkeypatch):
    settings, store = env
    fill(store, settings)
    exporter = Exporter(store, make_task(), settings, endpoint=hub.endpoint)

    def unreachable() -> str:
        raise StoreError("the database is unreachable")

    monkeypatch.setattr(store, "export_fingerprint", unreachable)
    with pytest.raises(ExportError, match="unreachable"):
        exporter.trigger().result(timeout=30)
    status = exporter.status()
    assert status.last_result == "failed" and "unreachable" in status.last_error and status.failures == 1
    exporter.stop(final_push=False)


def test_token_never_leaks(hub, env, caplog):
    caplog.set_level(logging.DEBUG)
    settings, store = env
    fill(store, settings)
    hub.fail_next(10, status=500, path_contains="/commit/", message=f"server echoed {TOKEN} back")
    exporter = Exporter(store, make_task(), settings, endpoint=hub.endpoint, retries=2, retry_initial=0.05)
    with pytest.raises(ExportError) as raised:
        exporter.trigger().result(timeout=60)
    status = exporter.status()
    exporter.stop(final_push=False)
    assert status.last_result == "failed" and status.failures == 1 and "500" in status.last_error
    assert "***" in status.last_error
    for text in (str(raised.value), repr(status), caplog.text, repr(settings)):
        assert TOKEN not in text
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    hub.clear_failures()
    exporter = Exporter(store, make_task(), settings, endpoint=hub.endpoint)
    exporter.push_now()
    exporter.stop(final_push=False)
    for content in hub.files(REPO).values():
        assert TOKEN.encode() not in content
    assert TOKEN not in caplog.text


# --------------------------------------------------------------------------- local export

def test_local_export_parquet_embeds_images(env, tmp_path):
    settings, store = env
    ids = fill(store, settings)
    out = tmp_path / "out"
    result = export_local(store, make_task(), out, settings.images_dir)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{t}.{k}" for t in ("records", "responses") for k in ("parquet", "jsonl", "csv"))

    import datasets
    ds = datasets.Dataset.from_parquet(str(out / "records.parquet"), cache_dir=str(tmp_path / "hfcache"))
    assert isinstance(ds.features["image"], datasets.Image)
    raw = ds.cast_column("image", datasets.Image(decode=False))
    for rid, row in zip(ids, raw):
        original = (settings.images_dir / store.record(rid).image_path).read_bytes()
        assert row["image"]["bytes"] == original  # the bytes themselves, not a path
    assert ds[2]["image"].convert("RGB").getpixel((0, 0)) == COLOURS[2]
    assert pq.read_table(out / "responses.parquet").num_rows == 9

    lines = [json.loads(x) for x in (out / "records.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [x["record_id"] for x in lines] == ids and "image" not in lines[0]
    assert lines[0]["image_file"] == store.record(ids[0]).image_path
    assert lines[1]["tied"] == [{"question": "label", "label": "cat"}, {"question": "label", "label": "dog"}]
    header = (out / "records.csv").read_text(encoding="utf-8").splitlines()[0].split(",")
    assert "image" not in header and "image_file" in header and "record_id" in header
    assert (out / "records.csv").stat().st_size < 10_000  # no image bytes in text files
    assert result.summary.records == 6 and not list(out.glob(".export-*"))


def test_cli_export_out(env, tmp_path, monkeypatch, capsys):
    settings, store = env
    fill(store, settings)
    store.close()
    task_file = tmp_path / "task.toml"
    task_file.write_text('title = "Pets"\nlabels = ["cat", "dog", "bird"]\noverlap = 2\n')
    for key, value in {"DATA_DIR": settings.data_dir, "CACHE_DIR": settings.cache_dir, "TASK_FILE": task_file,
                       "AUTH_MODE": "local", "EXPORT_REPO": "", "HF_TOKEN": ""}.items():
        monkeypatch.setenv(key, str(value))
    from annotator.cli import main
    assert main(["export", "--out", str(tmp_path / "cli"), "--quiet"]) == 0
    assert "wrote 6 records and 9 answers" in capsys.readouterr().out
    assert (tmp_path / "cli" / "records.parquet").exists()
    assert main(["export", "--push", "--quiet"]) == 2  # EXPORT_REPO not set: a clear error
    assert "EXPORT_REPO" in capsys.readouterr().err
