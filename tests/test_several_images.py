"""Records of several images and texts, and the preference question (issue 15).

The task file's [record] table and the preference kind; ingest from a folder's metadata.jsonl / .csv and
from a `datasets` dataset, with every bad line named and nothing stored for it; the stores (both engines)
keep the further images, and a database from before them opens with its records and answers unchanged;
the image route serves image 2 under its own signature and refuses any other; preference answers are
checked; their agreement is the label question's (checked against a hand computation).
"""

from __future__ import annotations

import io
import json
from contextlib import closing
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from starlette.testclient import TestClient

from ingesthelpers import png
from test_image_links import _view_with_buffer

from annotator import cli, metrics
from annotator.answers import AnswerError, check_answer, question_specs
from annotator.config import ConfigError, load_settings
from annotator.ingest import IngestError, ingest_dataset, ingest_folder
from annotator.model import NewRecord, RecordImage, ResponseWrite
from annotator.pg_store import PgStore
from annotator.reports import agreement
from annotator.runtime import Runtime
from annotator.store import Store
from annotator.task import load_task
from annotator.ui.server import create_app

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "examples" / "preference"
T0 = __import__("datetime").datetime(2026, 1, 5, 9, 0, 0)
PREFERENCE = '''title = "Pairs"
[record]
images = ["image_a", "image_b"]
texts = ["prompt"]

[[questions]]
name = "preferred"
kind = "preference"
'''


def task_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "task.toml"
    path.write_text(text)
    return path


# --- the task file --------------------------------------------------------------------------------

def test_a_preference_question_chooses_an_image_and_optionally_tie_or_both_bad(tmp_path: Path) -> None:
    task = load_task(task_file(tmp_path, PREFERENCE.replace('kind = "preference"',
                                                            'kind = "preference"\ntie = true\nboth_bad = true')))
    assert task.image_columns == ("image_a", "image_b") and task.text_columns == ("prompt",)
    (spec,) = question_specs(task)
    assert spec["labels"] == [{"name": "1", "key": "1"}, {"name": "2", "key": "2"}, {"name": "tie", "key": "t"},
                              {"name": "both_bad", "key": "b"}]
    plain = load_task(task_file(tmp_path, PREFERENCE))
    assert [label.name for label in plain.questions[0].labels] == ["1", "2"]


@pytest.mark.parametrize("text, message", [
    ('title = "x"\n[[questions]]\nname = "p"\nkind = "preference"\n',
     "a preference question chooses one of a record's images, so each record needs two or more"),
    (PREFERENCE.replace('images = ["image_a", "image_b"]', 'images = ["image_a"]'), "name 2 to 9 image columns"),
    (PREFERENCE.replace('texts = ["prompt"]', 'texts = ["image_a"]'), "'image_a' is an image column already"),
    (PREFERENCE.replace('texts = ["prompt"]', 'shown = ["prompt"]'), "[record] takes images and texts"),
    (PREFERENCE + "tie = 1\n", "questions[0].tie = 1 is not allowed; use true or false"),
])
def test_a_wrong_record_table_or_preference_is_named(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_task(task_file(tmp_path, text))
    assert message in str(err.value)


def test_preference_answers_are_checked(tmp_path: Path) -> None:
    task = load_task(task_file(tmp_path, PREFERENCE.replace('kind = "preference"',
                                                            'kind = "preference"\nboth_bad = true')))
    assert check_answer(task, {"preferred": "2"}) == {"preferred": "2"}
    assert check_answer(task, {"preferred": 1}) == {"preferred": "1"}  # a script may send the number
    assert check_answer(task, {"preferred": "both_bad"}) == {"preferred": "both_bad"}
    for raw, message in [({"preferred": "3"}, "'3' is not a choice of 'preferred'; choose one of: 1, 2, both_bad."),
                         ({"preferred": "tie"}, "'preferred' does not allow 'tie': choose one of the images (1, 2) "
                                                "or 'both_bad'."),
                         ({"preferred": True}, "'preferred' takes an image's number or one of 1, 2, both_bad, "
                                               "not true/false."),
                         ({}, "'preferred' needs an answer (one of 1, 2, both_bad)"),
                         ("1", "The answer must be an object")]:
        with pytest.raises(AnswerError) as err:
            check_answer(task, raw)
        assert message in str(err.value), str(err.value)


def test_preference_agreement_is_nominal_alpha_with_ties_stated(tmp_path: Path) -> None:
    """Hand computed: coincidences o(1,1)=2, o(2,2)=2, o(1,2)=o(2,1)=1, o(tie,tie)=2; n1=3, n2=3, ntie=2, n=8.
    Do = 2/8; De = (2*3*3 + 2*3*2 + 2*3*2) / (8*7) = 42/56; alpha = 1 - (2/8)/(42/56) = 2/3."""
    task = load_task(task_file(tmp_path, PREFERENCE.replace('kind = "preference"', 'kind = "preference"\ntie = true')))
    votes = {1: ("1", "1"), 2: ("2", "2"), 3: ("1", "2"), 4: ("tie", "tie")}
    rows = [(rid, user, {"preferred": v}) for rid, pair in votes.items() for user, v in zip(("ana", "bo"), pair)]
    (summary,), per_user = agreement(rows, task.questions)
    assert summary.kind == "preference" and summary.n_records == 4 and summary.n_answers == 8
    assert summary.alpha.value == pytest.approx(2 / 3)
    tie = metrics.majority(["1", "2"])
    assert tie.label is None and tie.tied == ("1", "2")  # consensus: the majority choice, a tie stated
    assert metrics.majority(["2", "2", "1"]).label == "2"


# --- ingest -----------------------------------------------------------------------------------------

def pairs_folder(root: Path, *, csv: bool = False) -> Path:
    """Three records of two images and a prompt; the third's image_b is the first's image_a (stored once)."""
    for sub in ("a", "b"):
        (root / sub).mkdir(parents=True)
    (root / "a" / "1.png").write_bytes(png((200, 0, 0), (30, 20)))
    (root / "b" / "1.png").write_bytes(png((0, 200, 0), (20, 40)))
    (root / "a" / "2.png").write_bytes(png((0, 0, 200)))
    (root / "b" / "2.png").write_bytes(png((9, 9, 9)))
    rows = [{"image_a": "a/1.png", "image_b": "b/1.png", "prompt": "red, then green"},
            {"image_a": "a/2.png", "image_b": "b/2.png", "prompt": "blue, then grey", "seed": "7"},
            {"image_a": "b/2.png", "image_b": "a/1.png", "prompt": "grey, then red"}]
    if csv:
        lines = ["image_a,image_b,prompt"] + [f'{r["image_a"]},{r["image_b"]},"{r["prompt"]}"' for r in rows]
        (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    else:
        (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


@pytest.mark.parametrize("csv", [False, True])
def test_a_folder_of_pairs_ingests_each_metadata_line_as_a_record(tmp_path: Path, csv: bool) -> None:
    folder = pairs_folder(tmp_path / "src", csv=csv)
    images = tmp_path / "images"
    with closing(Store(tmp_path / "db.duckdb")) as store:
        report = ingest_folder(store, folder, images, image_columns=("image_a", "image_b"), text_columns=("prompt",))
        assert report.added == 3 and not report.skipped, report.skipped
        records = {r.source_key: r for r in store.records(store.record_ids()).values()}
        first = records["folder:a/1.png|b/1.png"]
        assert (first.width, first.height) == (30, 20)
        (more,) = first.more_images
        assert (more.column, more.width, more.height) == ("image_b", 20, 40)
        assert (images / more.path).read_bytes() == (folder / "b" / "1.png").read_bytes()
        assert first.metadata == {"prompt": "red, then green"}  # the image fields are the images, not metadata
        assert first.image(2) == (more.path, more.sha256, 20, 40)
        assert records["folder:b/2.png|a/1.png"].more_images[0].sha256 == first.sha256
        again = ingest_folder(store, folder, images, image_columns=("image_a", "image_b"))
        assert again.added == 0 and again.already_present == 3
        (folder / ("metadata.csv" if csv else "metadata.jsonl")).unlink()
        none = ingest_folder(store, folder, images, image_columns=("image_a", "image_b"))
        assert none.added == 0 and none.skipped == [(str(folder), "no metadata.jsonl or metadata.csv: a record of "
                                                     "several images is a line naming its files in image_a, image_b")]


def test_a_bad_line_is_named_and_stores_nothing(tmp_path: Path) -> None:
    folder = pairs_folder(tmp_path / "src")
    (tmp_path / "outside.png").write_bytes(png((1, 2, 3)))
    (folder / "b" / "broken.png").write_bytes(png((5, 5, 5))[:40])
    bad = [{"image_a": "a/1.png", "image_b": "b/missing.png", "prompt": "x"},
           {"image_a": "a/1.png", "image_b": "../outside.png", "prompt": "x"},
           {"image_a": "a/1.png", "image_b": "b/broken.png", "prompt": "x"},
           {"image_a": "a/1.png", "prompt": "x"},
           {"image_a": "a/2.png", "image_b": "b/1.png"},
           {"image_a": "a/2.png", "image_b": "b/1.png", "prompt": 5}]
    with (folder / "metadata.jsonl").open("a") as out:
        out.write("".join(json.dumps(r) + "\n" for r in bad))
    with closing(Store(tmp_path / "db.duckdb")) as store:
        report = ingest_folder(store, folder, tmp_path / "images", image_columns=("image_a", "image_b"),
                               text_columns=("prompt",))
        assert report.added == 3 and store.record_count() == 3
    assert report.skipped == [
        ("metadata.jsonl line 4", "image_b (b/missing.png): no such file in the folder"),
        ("metadata.jsonl line 5", "image_b '../outside.png' is outside the folder"),
        ("metadata.jsonl line 6", "image_b: truncated or damaged"),
        ("metadata.jsonl line 7", "no 'image_b' field naming an image file"),
        ("metadata.jsonl line 8", "no 'prompt' text"),
        ("metadata.jsonl line 9", "'prompt' is not text"),
    ]


def test_a_dataset_of_pairs_ingests_every_image_column(tmp_path: Path) -> None:
    from datasets import Dataset, Features, Image as ImageFeature, Value

    a, b = png((200, 0, 0), (30, 20)), png((0, 200, 0), (20, 40))
    ds = Dataset.from_dict({"left": [{"bytes": a, "path": None}, {"bytes": a, "path": None}],
                            "right": [{"bytes": b, "path": None}, {"bytes": b"GIF89a broken", "path": "bad.gif"}],
                            "prompt": ["two squares", "a broken one"]},
                           features=Features({"left": ImageFeature(), "right": ImageFeature(), "prompt": Value("string")}))
    with closing(Store(tmp_path / "db.duckdb")) as store:
        report = ingest_dataset(store, ds, tmp_path / "images", name="me/pairs", image_columns=("left", "right"),
                                text_columns=("prompt",))
        assert report.added == 1 and report.skipped == [("train[1]", "right: truncated or damaged")]
        (record,) = store.records(store.record_ids()).values()
        assert record.metadata == {"prompt": "two squares"}
        assert (record.width, record.more_images[0].column, record.more_images[0].height) == (30, "right", 40)
        with pytest.raises(IngestError) as err:
            ingest_dataset(store, ds, tmp_path / "images", name="me/pairs", image_columns=("left", "middle"))
        assert "has no column 'middle'" in str(err.value) and "[record] images" in str(err.value)


def test_the_ingest_command_takes_image_and_text_columns(tmp_path: Path, monkeypatch, capsys) -> None:
    folder = pairs_folder(tmp_path / "src")
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TASK_FILE", str(ROOT / "data" / "task.toml"))  # a one-image task: the flags decide
    assert cli.main(["ingest", "--folder", str(folder), "--image-columns", "image_a,image_b",
                     "--text-columns", "prompt", "--no-progress"]) == 0
    assert "the store now holds 3 records" in capsys.readouterr().out
    assert cli.main(["ingest", "--folder", str(folder), "--image-columns", "image_a", "--no-progress"]) == 2
    assert "give two or more" in capsys.readouterr().err


# --- the stores --------------------------------------------------------------------------------------

MORE = (RecordImage("image_b", "ab/abcd.png", "ab" * 32, 20, 40, 123), RecordImage("image_c", "cd/cd.jpg", "cd" * 32, 5, 6, 7))


def test_both_engines_keep_the_further_images(tmp_path: Path, pg_url: str) -> None:
    for store in (Store(tmp_path / "db.duckdb"), PgStore(pg_url)):
        with closing(store):
            ids = store.add_records([NewRecord("k1", "x.png", "ef" * 32, 4, 3, 10, {"prompt": "p"}, None, MORE),
                                     NewRecord("k2", "y.png", "01" * 32, 4, 3, 10)])
            got = store.records(ids)
            assert got[ids[0]].more_images == MORE and got[ids[0]].image_count == 3
            assert got[ids[1]].more_images == () and got[ids[1]].image_count == 1


def test_a_database_from_before_keeps_its_records_and_answers(tmp_path: Path, pg_url: str) -> None:
    """A store at the schema before further images (DuckDB 2, PostgreSQL 5) opens with every record and
    answer as it was, each record of one image."""
    path = tmp_path / "old.duckdb"
    for rebuild in ("duckdb", "pg"):
        with closing(_old_store(rebuild, path, pg_url)) as store:  # a record as the previous version wrote it
            insert = ("INSERT INTO records (id, source_key, image_path, sha256, width, height, size_bytes, metadata, "
                      "position, created_at) VALUES (1, 'k1', 'x.png', 'ef', 4, 3, 10, '{\"a\": 1}', 1, now())")
            if rebuild == "duckdb":
                store._cur().execute(insert)
            else:
                with store._conn() as conn:
                    conn.execute(insert)
            store.apply([ResponseWrite(1, "ana", "submitted", {"label": "cat"}, "hm", 50, T0, first=True)])
        with closing(Store(path) if rebuild == "duckdb" else PgStore(pg_url)) as reopened:
            assert reopened.schema_version() == reopened.SCHEMA_VERSION
            (record,) = reopened.records(reopened.record_ids()).values()
            assert (record.source_key, record.image_path, record.metadata, record.more_images) == \
                ("k1", "x.png", {"a": 1}, ())
            (response,) = [r for batch in reopened.iter_responses() for r in batch]
            assert (response.answer, response.comment) == ({"label": "cat"}, "hm")


def _old_store(engine: str, path: Path, pg_url: str):
    """A store whose last migration (further images) is not applied yet: opened by the code with that step
    taken out, as the previous version would."""
    import annotator.pg_store as pg_module
    import annotator.store as duck_module

    module, cls = (duck_module, Store) if engine == "duckdb" else (pg_module, PgStore)
    old = module._MIGRATIONS[:-1]
    original = cls.SCHEMA_VERSION
    module_migrations = module._MIGRATIONS
    try:
        module._MIGRATIONS = old
        cls.SCHEMA_VERSION = len(old)
        store = Store(path) if engine == "duckdb" else PgStore(pg_url)
        assert store.schema_version() == len(old)
        return store
    finally:
        module._MIGRATIONS = module_migrations
        cls.SCHEMA_VERSION = original


# --- the image route --------------------------------------------------------------------------------

@pytest.fixture()
def client(tmp_path: Path):
    settings = load_settings({"DATA_DIR": str(tmp_path / "data"), "CACHE_DIR": str(tmp_path / "cache"),
                              "SOURCE_DIR": str(SAMPLE / "pairs"), "TASK_FILE": str(SAMPLE / "task.toml"),
                              "AUTH_MODE": "local"})
    runtime = Runtime.open(settings)
    with TestClient(create_app(runtime)) as c:
        c.runtime = runtime  # type: ignore[attr-defined]
        yield c


def test_image_two_has_its_own_signed_link_and_no_other_opens_it(client: TestClient) -> None:
    view = _view_with_buffer(client)
    item = view["item"]
    assert item["texts"] == [{"name": "prompt", "text": item["metadata"]["prompt"]}]
    one, two = item["images"]
    assert one["url"] == item["image_url"] and two["url"].split("?")[0] == f"/img/{item['record_id']}/2"
    assert view["preload"] == [i["url"] for u in view["upcoming"] for i in u["images"]]  # every image of each
    record = client.runtime.service.prefetch.rows([item["record_id"]])[item["record_id"]]
    got = client.get(two["url"])
    assert got.status_code == 200 and (two["width"], two["height"]) == record.image(2)[2:]
    assert got.content == client.runtime.service.images.prepare(record.image(2)[1], record.image(2)[0]).read_bytes()
    assert got.content != client.get(one["url"]).content

    query = urlsplit(one["url"]).query
    q = {k: v[0] for k, v in parse_qs(two["url"].split("?")[1]).items()}
    refused = [f"/img/{item['record_id']}/2?{query}",  # image 1's signature on image 2
               f"/img/{item['record_id']}/3?" + two["url"].split("?")[1],  # image 2's on an image 3
               two["url"].replace(f"s={q['s']}", "s=" + "0" * len(q["s"])),  # a forged signature
               two["url"].replace(f"u={q['u']}", "u=mallory"),  # another person's name
               two["url"].replace(f"/img/{item['record_id']}/", f"/img/{view['upcoming'][0]['record_id']}/")]
    for url in refused:
        assert client.get(url).status_code == 403, url
    assert client.get(f"/img/{item['record_id']}/1?{query}").status_code == 404  # image 1 has one link only
    for number in ("10", "9" * 5000, "²", "-2", "2.0"):  # past the last image a record can have, or no number
        assert client.get(f"/img/{item['record_id']}/{number}?" + two["url"].split("?")[1]).status_code == 404
    assert client.get(f"/img/{item['record_id']}/9?" + two["url"].split("?")[1]).status_code == 403


# --- sizes as shown ----------------------------------------------------------------------------------

def turned_jpeg(orientation: int, size: tuple[int, int] = (40, 20)) -> bytes:
    """A JPEG stored `size` wide and high whose EXIF orientation says how to show it."""
    from PIL import Image

    img = Image.new("RGB", size, (200, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif.tobytes())
    return buf.getvalue()


def test_sizes_are_the_images_as_shown_and_an_old_database_is_fixed_once(tmp_path: Path, pg_url: str) -> None:
    from annotator.images import describe, save_original
    from annotator.ingest import SHOWN_SIZES, fix_shown_sizes
    from annotator.runtime import _sizes_as_shown

    for orientation, shown in ((1, (40, 20)), (3, (40, 20)), (6, (20, 40)), (8, (20, 40))):
        assert describe(turned_jpeg(orientation))[1:] == shown, orientation
    images = tmp_path / "images"
    turned, plain = save_original(turned_jpeg(6), images), save_original(turned_jpeg(1, (30, 10)), images)
    assert (turned.width, turned.height) == (20, 40)
    settings = load_settings({"DATA_DIR": str(tmp_path), "TASK_FILE": str(ROOT / "data" / "task.toml")})
    assert settings.images_dir == images
    for store in (Store(tmp_path / "db.duckdb"), PgStore(pg_url)):
        with closing(store):
            # as an earlier version stored them: the header's size, unturned
            ids = store.add_records([NewRecord("turned", turned.path, turned.sha256, 40, 20, 1),
                                     NewRecord("plain", plain.path, plain.sha256, 30, 10, 1),
                                     NewRecord("gone", "ab/gone.jpg", "ab" * 32, 40, 20, 1)])
            assert fix_shown_sizes(store, images) == 1
            got = store.records(ids)
            assert [(got[i].width, got[i].height) for i in ids] == [(20, 40), (30, 10), (40, 20)]
            assert fix_shown_sizes(store, images) == 0  # idempotent

            store.set_image_sizes([(ids[0], 40, 20)])  # back to the old size: what start-up finds after an upgrade
            assert not store.marked(SHOWN_SIZES)
            _sizes_as_shown(store, settings, fresh=False)
            assert store.marked(SHOWN_SIZES) and store.record(ids[0]).width == 20
            store.set_image_sizes([(ids[0], 40, 20)])
            _sizes_as_shown(store, settings, fresh=False)  # done once: not again at every start
            assert store.record(ids[0]).width == 40
            store.mark(SHOWN_SIZES)  # marking again changes nothing
            assert store.marked(SHOWN_SIZES)


def test_a_preference_task_on_records_of_one_image_does_not_start(tmp_path: Path) -> None:
    from clients import make_images

    make_images(tmp_path / "source", 3)
    env = {"DATA_DIR": str(tmp_path / "data"), "CACHE_DIR": str(tmp_path / "cache"), "AUTH_MODE": "local",
           "SOURCE_DIR": str(tmp_path / "source")}
    Runtime.open(load_settings({**env, "TASK_FILE": str(ROOT / "data" / "task.toml")})).close()
    with pytest.raises(ConfigError) as err:
        Runtime.open(load_settings({**env, "TASK_FILE": str(SAMPLE / "task.toml")}))
    assert "3 of the 3 records in DATA_DIR=" in str(err.value)
    assert "fewer than the 2 images the task's preference question compares" in str(err.value)
