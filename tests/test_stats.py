"""summarize() and `python -m annotator stats`, on a real DuckDB file."""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path

import pytest

from annotator import cli
from annotator.model import NewRecord, ReopenWrite, ResponseWrite
from annotator.stats import format_text, summarize
from annotator.store import Store

REPO = Path(__file__).resolve().parent.parent
T0 = datetime(2024, 6, 1, 12, 0, 0)


def records(n: int) -> list[NewRecord]:
    return [NewRecord(f"k{i}", f"aa/{i}.png", f"{i:064x}", 10, 10, 100, {}, None) for i in range(n)]


def answer(record_id: int, user: str, status: str = "submitted") -> ResponseWrite:
    return ResponseWrite(record_id, user, status, {"label": "circle"} if status == "submitted" else {}, None, 900, T0)


def fill(store: Store) -> list[int]:
    ids = store.add_records(records(6))
    r1, r2, r3, r4, r5, _r6 = ids
    store.apply([
        answer(r1, "ann"), answer(r1, "bob"),                     # complete (2 of 2)
        answer(r2, "ann"),                                        # partly done
        answer(r3, "ann"), answer(r3, "bob"), answer(r3, "cy"),  # complete, one extra answer
        answer(r4, "bob", "skipped"),                             # only a skip: untouched
        answer(r5, "ann"), answer(r5, "cy"),                      # reopened below: needs 3 -> partly done
        ReopenWrite(r5, 1),
    ])
    store.apply([answer(r2, "ann", "skipped")])  # ann changes her mind: r2 is back to no answers
    store.apply([answer(r2, "cy")])               # ... and cy answers it: partly done again
    return ids


@pytest.fixture
def store(tmp_path: Path):
    s = Store(tmp_path / "annotator.duckdb")
    yield s
    s.close()


def test_summarize_counts(store: Store) -> None:
    fill(store)
    s = summarize(store, overlap=2)
    assert s["records"] == 6
    assert s["submitted"] == 8 and s["skipped"] == 2 and s["responses"] == 10
    assert (s["complete"], s["partial"], s["untouched"]) == (2, 2, 2)
    assert s["answers_needed"] == 6 * 2 + 1
    assert s["answers_done"] == 2 + 1 + 2 + 0 + 2 + 0
    assert s["percent_done"] == round(100 * 7 / 13, 1)
    none = {"submitted": 0, "right": 0}
    assert s["users"] == {"ann": {"submitted": 3, "skipped": 1, "gold": none},
                          "bob": {"submitted": 2, "skipped": 1, "gold": none},
                          "cy": {"submitted": 3, "skipped": 0, "gold": none}}
    json.dumps(s)  # JSON-ready as it is

    one = summarize(store, overlap=1)
    assert (one["complete"], one["partial"], one["untouched"]) == (4, 0, 2)  # r5 needs 1 + 1 extra: has 2


def test_summarize_empty_store(store: Store) -> None:
    s = summarize(store, overlap=3)
    assert s["records"] == 0 and s["complete"] == s["partial"] == s["untouched"] == 0
    assert s["users"] == {} and s["percent_done"] == 100.0
    assert "users        0" in format_text(s)


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    cli.add_stats(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.run(args)


@pytest.fixture
def stats_env(tmp_path: Path, monkeypatch) -> Path:
    data = tmp_path / "data"
    monkeypatch.setenv("DATA_DIR", str(data))
    monkeypatch.setenv("TASK_FILE", str(REPO / "data" / "task.toml"))  # overlap = 2
    for name in ("SOURCE_DIR", "SOURCE_DATASET", "DB_MODE"):
        monkeypatch.delenv(name, raising=False)
    store = Store(data / "annotator.duckdb")
    try:
        fill(store)
    finally:
        store.close()
    return data


def test_stats_command_json(stats_env: Path, capsys) -> None:
    assert run_cli(["stats", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["records"], out["complete"], out["partial"], out["untouched"]) == (6, 2, 2, 2)
    assert out["overlap"] == 2
    assert out["users"]["cy"] == {"submitted": 3, "skipped": 0, "gold": {"submitted": 0, "right": 0}}


def test_stats_command_text_and_overlap(stats_env: Path, capsys) -> None:
    assert run_cli(["stats", "--overlap", "1"]) == 0
    out = capsys.readouterr().out
    assert "complete     4 (overlap 1)" in out
    assert "partly done  0" in out and "untouched    2" in out
    assert "ann" in out and "cy" in out
    # the store was closed: another process-like open works at once
    Store(stats_env / "annotator.duckdb").close()
