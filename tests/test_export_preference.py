"""Records of several images through the Hub export and back: `records` carries every image (`image`, then
`more_images`) and the texts; the `preference` config holds the majority's image against the other, with the
vote counts, ties and "tie" / "both_bad" majorities left out and counted in the card; restore into an empty
store (DuckDB: with the same fingerprint; PostgreSQL) gives every image back, stored and linked. All through
the stand-in Hub, loaded with `datasets`.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import closing
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))

from test_export import REPO, T0, export_commits, hub, make_settings, png  # noqa: E402,F401

from test_export_configs import _push  # noqa: E402

from annotator.export.train_configs import RecordAnswers, train_configs  # noqa: E402
from annotator.export.restore import restore_from_hub  # noqa: E402
from annotator.ingest import ingest_folder  # noqa: E402
from annotator.model import Record, ResponseWrite  # noqa: E402
from annotator.pg_store import PgStore  # noqa: E402
from annotator.store import Store  # noqa: E402
from annotator.task import load_task  # noqa: E402

TASK_FILE = Path(__file__).resolve().parent.parent / "examples" / "preference" / "task.toml"
# per record (in metadata order): the answers to `preferred`, one per person
VOTES = [
    ["1", "1", "2"],               # 0: image 1 chosen, 2 to 1
    ["2", "2"],                    # 1: image 2 chosen
    ["1", "2"],                    # 2: a tie between the images: left out
    ["tie", "tie", "1"],           # 3: the majority says tie: left out
    ["both_bad", "both_bad"],      # 4: both bad: left out
    ["2", "tie", "2", "both_bad"],  # 5: image 2 chosen, with one tie and one both_bad vote
    [],                            # 6: no answer: left out
]
PEOPLE = ["alice", "bob", "carol", "dave"]

_LOAD = r"""
import json, sys
from datasets import load_dataset
repo = sys.argv[1]
out = {}
for name in ("records", "preference"):
    ds = load_dataset(repo, name, split="train")
    out[name] = {"features": {k: repr(v) for k, v in ds.features.items()},
                 "rows": [{k: (v.hex() if isinstance(v, bytes) else v) for k, v in row.items()}
                          for row in ds.data.to_pylist()] if name == "preference" else ds.data.to_pylist(),
                 "decoded": type(ds[0]["more_images"][0]["image"] if name == "records"
                                 else ds[0]["image_chosen"]).__name__}
print(json.dumps(out, default=lambda v: v.hex() if isinstance(v, bytes) else str(v)))
"""


def pairs(root: Path) -> list[tuple[bytes, bytes]]:
    """A folder of len(VOTES) two-image records with a prompt each; the images' bytes, record by record."""
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    lines, images = [], []
    for i in range(len(VOTES)):
        a, b = png((30 * i, 200, 10), (10 + i, 12)), png((10, 30 * i, 200), (14, 10 + i))
        (root / "a" / f"{i}.png").write_bytes(a)
        (root / "b" / f"{i}.png").write_bytes(b)
        lines.append(json.dumps({"image_a": f"a/{i}.png", "image_b": f"b/{i}.png", "prompt": f"prompt {i}"}))
        images.append((a, b))
    (root / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return images


def test_a_record_of_three_images_gives_the_chosen_one_against_each_other() -> None:
    task = load_task(TASK_FILE)
    (config,) = [c for c in train_configs(task) if c.name == "preference"]
    record = Record(7, "k", "a.png", "a" * 64, 1, 1, 1, {"prompt": "p"}, None, 7, 0)
    images = ({"bytes": b"1", "path": "1.png"}, {"bytes": b"2", "path": "2.png"}, {"bytes": b"3", "path": "3.png"})

    def view(votes: list[str], ties: list[str], majority: str | None, more=images[1:]) -> RecordAnswers:
        return RecordAnswers(record, images[0], {"preferred": votes}, {"preferred": majority}, {"preferred": ties},
                             more_images=more, texts={"prompt": "p"})

    rows = config.rows(view(["3", "3", "1"], [], "3"))
    assert [(r["image_chosen"], r["image_rejected"], r["rejected"], r["votes_chosen"], r["votes_rejected"])
            for r in rows] == [(images[2], images[0], 1, 2, 1), (images[2], images[1], 2, 2, 0)]
    assert config.rows(view(["1", "tie"], ["1", "tie"], None)) == []
    assert config.rows(view(["2"], [], "2", more=(images[1], None))) == []
    assert config.summary.rows == 2 and dict(config.summary.left_out) == {
        "tied records": 1, "records exported without their image": 1}


def test_preference_pairs_export_as_chosen_and_rejected_and_restore_every_image(hub, tmp_path: Path,
                                                                              pg_url: str) -> None:
    task = load_task(TASK_FILE)
    settings = make_settings(tmp_path / "a")
    images = pairs(tmp_path / "src")
    with closing(Store(settings.db_path)) as source:
        report = ingest_folder(source, tmp_path / "src", settings.images_dir, image_columns=task.image_columns,
                               text_columns=task.text_columns)
        assert report.added == len(VOTES)
        records = sorted(source.records(source.record_ids()).values(), key=lambda r: r.position)
        ids = [r.id for r in records]
        minute = 0
        for record_id, votes in zip(ids, VOTES):
            for user, vote in zip(PEOPLE, votes):
                minute += 1
                source.apply([ResponseWrite(record_id, user, "submitted", {"preferred": vote}, None, 100,
                                            T0 + timedelta(minutes=minute))])
        _push(source, task, settings, hub)

        commits = export_commits(hub)
        assert len(commits) == 1
        card = hub.files(REPO)["README.md"].decode()
        assert "### `preference`" in card and f'load_dataset("{REPO}", "preference", split="train")' in card
        for reason in ('records whose majority is a tie between images: 1', 'records whose majority answered '
                       '"tie": 1', 'records whose majority answered "both_bad": 1', "records without an answer: 1"):
            assert reason in card, reason
        assert "**3 rows**" in card

        proc = hub.run_python(_LOAD, tmp_path / "client", args=[REPO], timeout=200)
        data = json.loads(proc.stdout.strip().splitlines()[-1])

        # records: the first image in `image` as before, the second in `more_images`, the prompt in `texts`
        rec = data["records"]
        assert rec["features"]["image"] == "Image(mode=None, decode=True)"
        assert "'image': Image(mode=None, decode=True)" in rec["features"]["more_images"]
        assert rec["features"]["more_images"].startswith("List(")
        assert rec["decoded"] == "PngImageFile"
        by_id = {row["record_id"]: row for row in rec["rows"]}
        for i, record_id in enumerate(ids):
            row = by_id[record_id]
            assert bytes.fromhex(row["image"]["bytes"]) == images[i][0]
            (more,) = row["more_images"]
            assert bytes.fromhex(more["image"]["bytes"]) == images[i][1]
            assert (more["column"], more["sha256"]) == ("image_b", records[i].more_images[0].sha256)
            assert row["texts"] == {"prompt": f"prompt {i}"}

        # preference: chosen and rejected are the right images' bytes, the votes counted
        pref = data["preference"]
        assert pref["features"]["image_chosen"] == pref["features"]["image_rejected"] == "Image(mode=None, decode=True)"
        assert pref["decoded"] == "PngImageFile"
        got = [(row["record_id"], row["prompt"], bytes.fromhex(row["image_chosen"]["bytes"]),
                bytes.fromhex(row["image_rejected"]["bytes"]), row["chosen"], row["rejected"], row["votes_chosen"],
                row["votes_rejected"], row["votes_tie"], row["votes_both_bad"], row["num_votes"])
               for row in pref["rows"]]
        assert got == [
            (ids[0], "prompt 0", images[0][0], images[0][1], 1, 2, 2, 1, 0, 0, 3),
            (ids[1], "prompt 1", images[1][1], images[1][0], 2, 1, 2, 0, 0, 0, 2),
            (ids[5], "prompt 5", images[5][1], images[5][0], 2, 1, 2, 0, 1, 1, 4)]

        # restore into an empty store: every image saved and linked, the same records and fingerprint
        target_settings = make_settings(tmp_path / "b")
        with closing(Store(target_settings.db_path)) as target:
            restored = restore_from_hub(target, target_settings, task, endpoint=hub.endpoint)
            assert restored is not None and restored.records == len(VOTES) and restored.missing_images == 0
            assert target.export_fingerprint() == source.export_fingerprint()
            again = target.records(ids)
            assert again == source.records(ids)
            for i, record_id in enumerate(ids):
                first, (second,) = again[record_id], again[record_id].more_images
                assert (target_settings.images_dir / first.image_path).read_bytes() == images[i][0]
                assert (target_settings.images_dir / second.path).read_bytes() == images[i][1]

        # and into an empty PostgreSQL store: the same records, every image linked
        pg_settings = make_settings(tmp_path / "c", store_url=pg_url)
        with closing(PgStore(pg_url)) as pg:
            restored = restore_from_hub(pg, pg_settings, task, endpoint=hub.endpoint)
            assert restored is not None and restored.records == len(VOTES) and restored.missing_images == 0
            assert pg.records(ids) == source.records(ids)
            assert all((pg_settings.images_dir / r.more_images[0].path).is_file() for r in pg.records(ids).values())
