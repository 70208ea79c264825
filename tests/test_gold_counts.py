"""Gold answers are checks, not work done (issue 17): the stats command, the answers-over-time chart and the
label distribution leave them out, as the dashboard's progress does, on both engines.

One store per engine with records of the order and gold records, answered by three people; every figure is
compared with what the same answers give without the gold records.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from clients import write_task
from storehelpers import any_store, engine, make_store  # noqa: F401 - fixtures

from annotator import cli
from annotator.gold import GoldAnswer
from annotator.metrics import LatencyWindow
from annotator.model import NewRecord, ResponseWrite, utcnow
from annotator.reports import Dashboard, DashboardDeps
from annotator.stats import format_text, summarize
from annotator.store import Store
from annotator.store_protocol import StoreProtocol
from annotator.task import load_task

NOW = utcnow().replace(microsecond=0)
GOLD_LABEL = "circle"


class NoLeases:
    """The backend as the team view reads it: nobody holds a lease."""

    def leases(self) -> dict[str, list[tuple[int, str]]]:
        return {}


def fill(store: StoreProtocol) -> tuple[list[int], dict[int, GoldAnswer]]:
    """Four records of the order and two gold records; (order, gold)."""
    ids = store.add_records([NewRecord(f"k{i}", f"{i}.png", f"{i:064x}", 8, 8, 100, {}, None) for i in range(6)])
    order, gold_ids = ids[:4], ids[4:]
    r1, r2, r3, _r4 = order
    g1, g2 = gold_ids

    def say(rid: int, user: str, label: str | None) -> ResponseWrite:
        status, answer = ("submitted", {"label": label}) if label else ("skipped", {})
        return ResponseWrite(rid, user, status, answer, None, 800, NOW - timedelta(minutes=3))

    store.apply([say(r1, "ann", "square"), say(r1, "bob", "square"), say(r2, "ann", "triangle"),
                 say(r3, "cy", None),
                 say(g1, "ann", GOLD_LABEL), say(g1, "bob", "square"), say(g1, "cy", None),
                 say(g2, "ann", GOLD_LABEL), say(g2, "bob", GOLD_LABEL), say(g2, "cy", GOLD_LABEL)])
    return order, {g: GoldAnswer({"label": GOLD_LABEL}) for g in gold_ids}


def test_stats_leave_gold_out_and_count_it_apart(any_store: StoreProtocol) -> None:
    _order, gold = fill(any_store)
    s = summarize(any_store, overlap=2, gold=gold)
    assert s["records"] == 4 and s["answers_needed"] == 8
    assert (s["complete"], s["partial"], s["untouched"]) == (1, 1, 2)
    assert (s["submitted"], s["skipped"], s["responses"]) == (3, 1, 4)
    assert s["answers_done"] == 3 and s["percent_done"] == 37.5
    assert s["users"] == {"ann": {"submitted": 2, "skipped": 0, "gold": {"submitted": 2, "right": 2}},
                          "bob": {"submitted": 1, "skipped": 0, "gold": {"submitted": 2, "right": 1}},
                          "cy": {"submitted": 0, "skipped": 1, "gold": {"submitted": 1, "right": 1}}}
    assert s["gold"] == {"records": 2, "submitted": 5, "skipped": 1, "right": 4}
    text = format_text(s)
    assert "gold         2 records, not counted above: 5 answers (4 right), 1 skipped" in text
    assert "2/2 gold right" in text

    plain = summarize(any_store, overlap=2)  # no gold named: every record is work
    assert plain["records"] == 6 and plain["submitted"] == 8 and plain["gold"]["records"] == 0


def test_the_dashboard_timeline_and_labels_agree_with_the_stats(any_store: StoreProtocol, tmp_path: Path) -> None:
    _order, gold = fill(any_store)
    task = load_task(write_task(tmp_path / "task.toml", overlap=2))
    board = Dashboard(DashboardDeps(store=any_store, task=task, backend=NoLeases(),  # type: ignore[arg-type]
                                    click_latency=LatencyWindow(), data_dir=tmp_path, storage=None, exporter=None,
                                    sign_in_limits=None, gold=gold))
    team = board.team()
    s = summarize(any_store, overlap=2, gold=gold)
    assert team.progress.answers == s["submitted"] and team.progress.skips == s["skipped"]
    assert (team.progress.complete, team.progress.records) == (s["complete"], s["records"])
    assert sum(p.submitted for p in team.timeline) == s["submitted"], "gold answers are not work done"
    assert sum(p.skipped for p in team.timeline) == s["skipped"]
    labels = Counter({label: n for _q, label, n in team.labels if n})
    assert labels == Counter({"square": 2, "triangle": 1})


def test_the_timeline_query_leaves_out_the_records_named(any_store: StoreProtocol) -> None:
    _order, gold = fill(any_store)
    since = NOW - timedelta(hours=1)
    every = any_store.dashboard_timeline(since, 300)
    without = any_store.dashboard_timeline(since, 300, list(gold))
    assert sum(n for _, status, n in every if status == "submitted") == 8
    assert sum(n for _, status, n in without if status == "submitted") == 3
    assert sum(n for _, status, n in without if status == "skipped") == 1
    assert {b for b, _, _ in without} <= {b for b, _, _ in every}


def test_stats_command_reads_the_gold_records_of_the_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    store = Store(data / "annotator.duckdb")
    try:
        fill(store)
    finally:
        store.close()
    (tmp_path / "gold.jsonl").write_text("".join(json.dumps({"key": f"k{i}", "answer": GOLD_LABEL}) + "\n"
                                                 for i in (4, 5)))
    task = write_task(tmp_path / "task.toml", overlap=2)
    task.write_text('gold_file = "gold.jsonl"\n' + task.read_text())
    monkeypatch.setenv("DATA_DIR", str(data))
    monkeypatch.setenv("TASK_FILE", str(task))
    for name in ("SOURCE_DIR", "SOURCE_DATASET", "DB_MODE", "STORE_URL"):
        monkeypatch.delenv(name, raising=False)
    parser = argparse.ArgumentParser()
    cli.add_stats(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["stats", "--json"])
    assert args.run(args) == 0
    out: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert (out["records"], out["submitted"], out["complete"]) == (4, 3, 1)
    assert out["gold"] == {"records": 2, "submitted": 5, "skipped": 1, "right": 4}
