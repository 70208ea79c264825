"""Gold records out of the export's consensus and into their own `gold` config (issue 17), on both engines.

The gold answers come from a gold file through runtime.load_gold, as at start. Pushed to the stand-in Hub
and loaded back with `datasets`: `records`, `responses`, the classification config and the card's totals
hold no gold record; `gold` has one row per answer with the expected answer, whether it was right and the
explanation, the card each annotator's accuracy. Restore gives back the same store, gold answers included;
a task without gold again pushes no `gold` folder. The local export (and `export --out`) writes gold.*.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))

import huggingface_hub.constants  # noqa: E402
import pytest  # noqa: E402
from test_export import REPO, export_commits, fill, hub, make_settings, make_task  # noqa: E402,F401
from test_export_configs import _front_matter  # noqa: E402
from test_export_questions import _responses  # noqa: E402

from annotator import admin_actions  # noqa: E402
from annotator.auth import Identity  # noqa: E402
from annotator.export.hub import Exporter, ExportResult  # noqa: E402
from annotator.gold import GoldAnswer  # noqa: E402
from annotator.export.local import export_local  # noqa: E402
from annotator.export.restore import restore_from_hub  # noqa: E402
from annotator.runtime import Runtime, load_gold  # noqa: E402
from annotator.store import Store  # noqa: E402
from annotator.store_protocol import StoreProtocol  # noqa: E402
from annotator.task import Quality, TaskSpec  # noqa: E402

# fill(): record 2 has dog from alice and carol and a skip from bob; record 3 bird from alice
GOLD_LINES = [{"key": "folder:img2.png", "answer": "cat", "explanation": "the ears"},
              {"key": "folder:img3.png", "answer": "bird", "explanation": "feathers"}]

# each config as `datasets` loads it: its features, and its rows without the image bytes
_LOAD = r"""
import json, sys
from datasets import load_dataset
out = {}
for name in sys.argv[2:]:
    ds = load_dataset(sys.argv[1], name, split="train")
    out[name] = {"features": {k: repr(v) for k, v in ds.features.items()},
                 "rows": [{k: v for k, v in row.items() if k != "image"} for row in ds]}
print(json.dumps(out, default=str))
"""


def _load(hub, tmp_path: Path, *names: str) -> dict:
    proc = hub.run_python(_LOAD, tmp_path / "client", args=[REPO, *names], timeout=200)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _push(store: StoreProtocol, task: TaskSpec, settings, hub,
          gold: dict[int, GoldAnswer] | None = None) -> ExportResult:
    exporter = Exporter(store, task, settings, endpoint=hub.endpoint, gold=gold)
    try:
        return exporter.push_now()
    finally:
        exporter.stop(final_push=False)


def gold_task(tmp_path: Path) -> TaskSpec:
    path = tmp_path / "gold.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in GOLD_LINES))
    return replace(make_task(), quality=Quality(gold_file=str(path)))


@pytest.fixture
def source(tmp_path: Path, make_store):
    """A store of the test's engine filled by fill(), and the task with its gold file:
    (settings, store, record ids, task)."""
    settings = make_settings(tmp_path / "a")
    store = make_store()
    return settings, store, fill(store, settings), gold_task(tmp_path)


def _restores_the_same(hub, tmp_path: Path, task: TaskSpec, source: StoreProtocol,
                       target: StoreProtocol) -> None:
    """Restore the pushed export into the empty store `target` and check it is `source` again."""
    settings = make_settings(tmp_path / "b")
    report = restore_from_hub(target, settings, task, endpoint=hub.endpoint)
    assert report is not None and (report.records, report.responses) == (6, 9)
    assert _responses(target) == _responses(source)
    assert target.records(target.record_ids()) == source.records(source.record_ids())
    assert target.export_fingerprint() == source.export_fingerprint()


def test_gold_config_pushed_apart_loads_and_restores(hub, tmp_path: Path, source, make_store) -> None:
    settings, store, ids, task = source
    gold = load_gold(store, task)
    assert sorted(gold) == [ids[2], ids[3]]
    result = _push(store, task, settings, hub, gold)
    assert (result.records, result.responses) == (4, 5)  # records 0, 1, 4, 5; their 4 answers and a skip

    files = hub.files(REPO)
    assert {p for p in files if p.startswith("gold/")} == {
        "gold/train-00000-of-00001.parquet", "gold/records-00000-of-00001.parquet",
        "gold/responses-00000-of-00001.parquet"}
    card = files["README.md"].decode()
    configs = _front_matter(card)["configs"]
    assert [c["config_name"] for c in configs] == ["records", "responses", "classification", "gold"]
    assert configs[-1]["data_files"] == [{"split": "train", "path": "gold/train-*.parquet"}]
    assert f'load_dataset("{REPO}", "gold", split="train")' in card
    assert "- **Records:** 4 (" in card and "**Answers:** 4 submitted and 1 skipped, by 2 annotators" in card
    assert "2 gold records" in card and "(4 rows, skips included)" in card
    assert "| alice | 2 | 1 | 50.0% |" in card and "| carol | 1 | 0 | 0.0% |" in card

    data = _load(hub, tmp_path, "records", "responses", "classification", "gold")
    assert [r["record_id"] for r in data["records"]["rows"]] == [ids[0], ids[1], ids[4], ids[5]]
    assert {r["record_id"] for r in data["responses"]["rows"]} == {ids[0], ids[1], ids[4]}
    assert ids[2] not in {r["record_id"] for r in data["classification"]["rows"]}
    rows = sorted(data["gold"]["rows"], key=lambda r: (r["record_id"], r["annotator"]))
    assert [(r["record_id"], r["annotator"], r["status"], r["correct"], json.loads(r["expected"]),
             r["explanation"]) for r in rows] == [
        (ids[2], "alice", "submitted", False, {"label": "cat"}, "the ears"),
        (ids[2], "bob", "skipped", None, {"label": "cat"}, "the ears"),
        (ids[2], "carol", "submitted", False, {"label": "cat"}, "the ears"),
        (ids[3], "alice", "submitted", True, {"label": "bird"}, "feathers")]
    assert json.loads(rows[0]["answer"]) == {"label": "dog"} and rows[0]["source_key"] == "folder:img2.png"
    assert data["gold"]["features"]["updated_at"] == "Value('timestamp[us, tz=UTC]')"

    # restore: the gold records and every answer to them come back, so the store is the same
    target = make_store()
    _restores_the_same(hub, tmp_path, task, store, target)
    assert load_gold(target, task) == gold

    # the task drops its gold records: they are data again, and the gold folder goes
    _push(store, make_task(), settings, hub)
    assert len(export_commits(hub)) == 2
    files = hub.files(REPO)
    assert not any(p.startswith("gold/") for p in files)
    card = files["README.md"].decode()
    assert "gold" not in [c["config_name"] for c in _front_matter(card)["configs"]] and "Gold" not in card
    assert "- **Records:** 6 (" in card


def test_gold_records_nobody_answered_are_kept_for_restore_but_publish_no_config(hub, tmp_path: Path, source,
                                                                               make_store) -> None:
    settings, store, ids, task = source
    gold = {ids[5]: next(iter(load_gold(store, task).values()))}  # record 5 has no answer
    _push(store, task, settings, hub, gold)
    files = hub.files(REPO)
    assert {p for p in files if p.startswith("gold/")} == {"gold/records-00000-of-00001.parquet"}
    card = files["README.md"].decode()
    assert "gold" not in [c["config_name"] for c in _front_matter(card)["configs"]]
    assert "No one has answered a gold record yet" in card and "- **Records:** 5 (" in card
    _restores_the_same(hub, tmp_path, task, store, make_store())


def test_local_export_and_cli_write_gold_apart(tmp_path: Path, monkeypatch, capsys) -> None:
    settings = make_settings(tmp_path)
    store = Store(settings.db_path)
    try:
        ids = fill(store, settings)
        task = gold_task(tmp_path)
        gold = load_gold(store, task)
        seen: list[tuple[int, int]] = []  # one record a shard: gold records count toward the progress too
        out = export_local(store, task, tmp_path / "out", settings.images_dir, gold=gold, shard_rows=1,
                           progress=lambda done, total: seen.append((done, total)))
        assert list(dict.fromkeys(seen)) == [(n, 6) for n in range(7)]
        assert sorted(name for name, _ in out.files if _ == "jsonl") == ["gold", "records", "responses"]
        read = {name: [json.loads(line) for line in (tmp_path / "out" / f"{name}.jsonl").read_text().splitlines()]
                for name in ("gold", "records", "responses")}
        assert [r["record_id"] for r in read["records"]] == [ids[0], ids[1], ids[4], ids[5]]
        assert {r["record_id"] for r in read["responses"]} == {ids[0], ids[1], ids[4]}
        assert sorted((r["record_id"], r["annotator"], r["correct"]) for r in read["gold"]) == [
            (ids[2], "alice", False), (ids[2], "bob", None), (ids[2], "carol", False), (ids[3], "alice", True)]
        assert (tmp_path / "out" / "gold.parquet").exists() and (tmp_path / "out" / "gold.csv").exists()
        assert out.summary.records == 4 and out.summary.responses == 5

        plain = export_local(store, make_task(), tmp_path / "plain", settings.images_dir)  # no gold: as before
        assert not any(name == "gold" for name, _ in plain.files) and plain.summary.records == 6
    finally:
        store.close()

    task_file = tmp_path / "task.toml"
    task_file.write_text(f'title = "Pets"\nlabels = ["cat", "dog", "bird"]\noverlap = 2\n'
                         f'gold_file = "{tmp_path / "gold.jsonl"}"\n')
    for key, value in {"DATA_DIR": settings.data_dir, "CACHE_DIR": settings.cache_dir, "TASK_FILE": task_file,
                       "AUTH_MODE": "local", "EXPORT_REPO": "", "HF_TOKEN": ""}.items():
        monkeypatch.setenv(key, str(value))
    from annotator.cli import main
    assert main(["export", "--out", str(tmp_path / "cli"), "--quiet"]) == 0
    assert "wrote 4 records and 5 answers" in capsys.readouterr().out
    assert len((tmp_path / "cli" / "gold.jsonl").read_text().splitlines()) == 4


def test_the_runtime_gives_its_gold_to_the_exporter_and_the_admin_download(hub, tmp_path: Path,
                                                                          monkeypatch) -> None:
    settings = make_settings(tmp_path)
    store = Store(settings.db_path)
    ids = fill(store, settings)
    store.close()
    Path(settings.task_file).write_text(f'title = "Pets"\nlabels = ["cat", "dog", "bird"]\noverlap = 2\n'
                                        f'gold_file = "{tmp_path / "gold.jsonl"}"\n')
    gold_task(tmp_path)  # writes gold.jsonl
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", hub.endpoint)
    rt = Runtime.open(settings, ingest=False)
    try:
        assert sorted(rt.service.gold) == [ids[2], ids[3]]
        assert rt.exporter is not None
        pushed = rt.exporter.push_now()
        assert (pushed.records, pushed.responses) == (4, 5)
        assert "gold/train-00000-of-00001.parquet" in hub.files(REPO)
        files, result = admin_actions.prepare_downloads(rt.admin_deps(), Identity("boss", is_admin=True),
                                                        admin_actions.DownloadFolders(tmp_path / "downloads"))
        assert sorted(f.name for f in files if f.name.startswith("gold.")) == ["gold.csv", "gold.jsonl",
                                                                               "gold.parquet"]
        assert "4 records and 5 answers" in result.message
    finally:
        rt.close()
