"""Final answers in the Hub export (issue 17, adjudication), on DuckDB and PostgreSQL: `records` carries
`final` beside the consensus, the classification config takes the final answer over the majority (and a
tied or unanswered record an admin settled), the card counts the settled records, and a restore gives the
final answers back (the same store, the same fingerprint). Pushed to the stand-in Hub, read with `datasets`."""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))

from test_export import REPO, T0, fill, hub, make_settings, make_task  # noqa: E402,F401
from test_gold_export_hub import _load, _push, _restores_the_same  # noqa: E402

from annotator.model import FinalWrite  # noqa: E402


def test_final_answers_are_exported_preferred_by_the_configs_and_restored(hub, tmp_path: Path, make_store) -> None:
    settings = make_settings(tmp_path / "a")
    store = make_store()
    ids = fill(store, settings)  # record 0 cat (2), 1 tied cat/dog, 2 dog (2), 3 bird (1), 4 skipped, 5 nothing
    at = T0 + timedelta(hours=1, microseconds=123456)
    store.apply([FinalWrite(ids[1], {"label": "bird"}, "boss", at),           # settles a tie
                 FinalWrite(ids[2], {"label": "cat"}, "boss", at),            # overrules the majority
                 FinalWrite(ids[5], {"label": "dog"}, "root", at),            # nobody answered it
                 FinalWrite(ids[3], {"label": "dog"}, "boss", at), FinalWrite(ids[3], None, "boss", at)])  # taken back
    task = make_task()
    result = _push(store, task, settings, hub)
    assert result.records == 6

    card = hub.files(REPO)["README.md"].decode()
    assert "- **Adjudicated:** 3 records settled by an admin" in card
    data = _load(hub, tmp_path, "records", "classification")
    features = data["records"]["features"]
    assert features["final"] == "{'label': Value('string')}" and features["final_by"] == "Value('string')"
    finals = {r["record_id"]: (r["label"], r["final"], r["final_by"]) for r in data["records"]["rows"]}
    assert finals == {ids[0]: ("cat", None, None), ids[1]: (None, {"label": "bird"}, "boss"),
                      ids[2]: ("dog", {"label": "cat"}, "boss"), ids[3]: ("bird", None, None),
                      ids[4]: (None, None, None), ids[5]: (None, {"label": "dog"}, "root")}
    assert next(r for r in data["records"]["rows"] if r["record_id"] == ids[1])["final_at"].startswith(
        "2025-05-01 13:00:00.123456")
    # cat 0, dog 1, bird 2: the final answer wins; the tied and the unanswered record are in, settled
    assert sorted((r["record_id"], r["label"]) for r in data["classification"]["rows"]) == [
        (ids[0], 0), (ids[1], 2), (ids[2], 0), (ids[3], 2), (ids[5], 1)]

    target = make_store()
    _restores_the_same(hub, tmp_path, task, store, target)
    assert target.finals() == store.finals() and sorted(target.finals()) == [ids[1], ids[2], ids[5]]


def test_every_ready_to_train_kind_prefers_the_final_answer() -> None:
    from collections import Counter

    from annotator.export.train_configs import CAPTIONS, OBJECTS, PREFERENCE, RATING, RecordAnswers
    from annotator.model import Record
    from annotator.task import Label, Question

    record = Record(7, "k", "k.png", "ab" * 32, 40, 30, 10, {}, None, 7, 0)
    image = {"bytes": b"png", "path": "k.png"}
    boxes = Question("objects", "Objects", "boxes", labels=(Label("car", "c"),))
    rating = Question("quality", "Quality", "rating")
    caption = Question("caption", "Caption", "text")
    pref = Question("pick", "Which?", "preference", labels=(Label("1", "1"), Label("2", "2"), Label("tie", "t")),
                    tie=True)
    final_box = [{"label": "car", "bbox": [1.0, 2.0, 3.0, 4.0]}]

    def view(values: dict, consensus: dict, ties: dict, final: dict, status: str = "partial") -> RecordAnswers:
        return RecordAnswers(record, image, values, consensus, ties, status, (dict(image),), {}, final)

    left: Counter[str] = Counter()
    # objects: a partial record an admin settled gives its final boxes
    [row] = OBJECTS.rows(boxes, view({"objects": [[]]}, {"objects": []}, {"objects": []},
                                     {"objects": final_box}), left)
    assert row["objects"]["bbox"] == [[1.0, 2.0, 3.0, 4.0]] and not left
    # rating: the final rating in rating_median, even with no rating given
    [row] = RATING.rows(rating, view({"quality": []}, {"quality": None}, {}, {"quality": 2}), left)
    assert (row["rating_median"], row["rating_mean"], row["num_ratings"]) == (2, None, 0)
    # captions: one row, the final text, instead of each answer
    rows = CAPTIONS.rows(caption, view({"caption": ["a", "b"]}, {}, {}, {"caption": "the final"}), left)
    assert [r["text"] for r in rows] == ["the final"]
    # preference: a tie between the images settled by the admin
    rows = PREFERENCE.rows(pref, view({"pick": ["1", "2"]}, {"pick": None}, {"pick": ["1", "2"]}, {"pick": "2"}),
                           left)
    assert [(r["chosen"], r["rejected"], r["votes_chosen"]) for r in rows] == [(2, 1, 1)] and not left
