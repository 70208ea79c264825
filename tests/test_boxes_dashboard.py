"""A boxes question on the dashboard (issue 16): mean F1, each annotator's F1 against the others, the
consensus per label, the boxes of each label in the team's chart and a gallery of the records people
disagree on most, read from a real store (DuckDB and PostgreSQL) and drawn as escaped SVG over each
image's signed link, for admins only."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from annotator.auth import Identity
from annotator.config import load_settings
from annotator.engine import open_store
from annotator.model import NewRecord, ResponseWrite, utcnow
from annotator.reports import Dashboard
from annotator.runtime import Runtime
from annotator.ui.dashboard import agreement_html

BOSS = Identity("boss", is_admin=True)
ANN = Identity("ann", is_admin=False)
EVIL = "<img src=x onerror=alert(1)>"
TASK = """title = "Shapes"
overlap = 2
[[questions]]
name = "objects"
kind = "boxes"
labels = ["circle", "sq'uare<"]
"""


def box(label: str, *bbox: float) -> dict:
    return {"label": label, "bbox": [float(v) for v in bbox]}


SQ = "sq'uare<"
# r1: both agree (F1 1); r2: one box of three matches (F1 2*1/3); r3: labels differ (F1 0); r4: one answer
ANSWERS = [
    (0, "ann", [box("circle", 1, 1, 10, 10)]), (0, EVIL, [box("circle", 1, 1, 10, 10)]),
    (1, "ann", [box("circle", 0, 0, 10, 10), box(SQ, 20, 5, 8, 8)]), (1, EVIL, [box("circle", 0, 0, 10, 9)]),
    (2, "ann", [box("circle", 5, 5, 5, 5)]), (2, EVIL, [box(SQ, 5, 5, 5, 5)]),
    (3, "ann", [box("circle", 5, 5, 5, 5)]),
]


@pytest.fixture(params=["duckdb", "postgres"])
def runtime(request, tmp_path: Path) -> Iterator[tuple[Runtime, list[int]]]:
    task = tmp_path / "task.toml"
    task.write_text(TASK)
    env = {"DATA_DIR": str(tmp_path / "data"), "CACHE_DIR": str(tmp_path / "cache"), "TASK_FILE": str(task),
           "AUTH_MODE": "password", "ADMINS": "boss", "BOX_IOU": "0.5"}
    if request.param == "postgres":
        env["STORE_URL"] = request.getfixturevalue("pg_url")
    settings = load_settings(env)
    store = open_store(settings)
    ids = store.add_records([NewRecord(f"k{i}", f"aa/{i}.png", f"{i:064x}", 40 + i, 20 + i, 100, {}, None)
                             for i in range(4)])
    now = utcnow()
    store.apply([ResponseWrite(ids[rec], user, "submitted", {"objects": boxes}, None, 1000, now)
                 for rec, user, boxes in ANSWERS])
    store.close()
    rt = Runtime.open(settings, ingest=False)
    yield rt, ids
    rt.close()


def test_boxes_agreement_on_the_dashboard(runtime: tuple[Runtime, list[int]]) -> None:
    rt, ids = runtime
    board = Dashboard(rt.dashboard_deps())
    assert board.snapshot(ANN).admin is None  # annotators see none of it
    snap = board.snapshot(BOSS)
    [g] = snap.admin.agreement
    assert (g.kind, g.n_records, g.n_answers) == ("boxes", 3, 6)
    assert g.mean_f1 == pytest.approx((1 + 2 / 3 + 0) / 3)
    # the consensus: r1's circle and r2's circle (both drew them); nothing on r3
    assert g.consensus_boxes == (("circle", 2), (SQ, 0))
    # per annotator, pooled: ann 2*(1+1+0) / (2+3+2) = 4/7, the same for the other
    rows = {a.user: a for a in snap.admin.annotators}
    assert rows["ann"].agreement["objects"] == pytest.approx(4 / 7) and rows["ann"].compared["objects"] == 3
    assert rows[EVIL].agreement["objects"] == pytest.approx(4 / 7)
    # the gallery: lowest F1 first, F1 1 left out, each with its image's size
    assert [(d.record_id, d.f1, d.width, d.height) for d in g.disputed] == [(ids[2], 0.0, 42, 22),
                                                                            (ids[1], pytest.approx(2 / 3), 41, 21)]
    assert dict(g.disputed[1].drawn)["ann"] == (box("circle", 0, 0, 10, 10), box(SQ, 20, 5, 8, 8))
    assert g.disputed[1].consensus == (box("circle", 0, 0, 10, 9.5),)
    assert snap.as_dict()["agreement"][0]["mean_f1"] == pytest.approx(5 / 9)
    # the team's label chart counts boxes: six circles and two squares were drawn
    assert snap.team.labels == (("objects", "circle", 6), ("objects", SQ, 2))

    page = agreement_html(snap.admin.agreement, lambda rid: f"/img/{rid}?u=boss&e=1&s=x")
    assert "<b>0.556</b>" in page and f"id='dash-gallery-objects'" in page
    assert f"<image href='/img/{ids[2]}?u=boss&amp;e=1&amp;s=x'" in page and "viewBox='0 0 42 22'" in page
    assert "<rect x='20' y='5' width='8' height='8'" in page
    assert "stroke-dasharray" in page  # the consensus
    assert EVIL not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert SQ not in page and "sq&#x27;uare&lt;" in page
    assert "dash-gallery" not in agreement_html(snap.admin.agreement)  # no links: no gallery
