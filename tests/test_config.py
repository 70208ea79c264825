"""Each bad setting or task-file value stops start-up with its own message."""

from __future__ import annotations

from pathlib import Path

import pytest

from annotator.config import ConfigError, load_settings
from annotator.task import load_task, record_suggestion_column

GOOD_TASK = """
title = "Cats"
guidelines = "Label the animal."
kind = "single_label"
overlap = 2
order = "shuffle"
seed = 7
comment = true
suggestion_column = "label"

[[labels]]
name = "cat"
key = "c"

[[labels]]
name = "dog"
"""


def write_task(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "task.toml"
    path.write_text(text)
    return path


def test_good_task_is_read(tmp_path: Path) -> None:
    task = load_task(write_task(tmp_path, GOOD_TASK))
    assert task.title == "Cats"
    (only,) = task.questions
    assert only.label_names == ("cat", "dog")
    assert [label.key for label in only.labels] == ["c", "2"]  # default keys follow position
    assert (task.overlap, task.order, task.seed, task.comment) == (2, "shuffle", 7, True)
    assert only.suggestion_column == record_suggestion_column(task) == "label"


def test_shipped_sample_task_is_valid() -> None:
    task = load_task(Path(__file__).resolve().parent.parent / "data" / "task.toml")
    assert task.questions[0].labels and task.overlap >= 1


@pytest.mark.parametrize("change, expected", [
    (("kind = \"single_label\"", "kind = \"boxes\""), "kind = 'boxes'"),
    (("overlap = 2", "overlap = 0"), "overlap = 0"),
    (("overlap = 2", "overlap = \"two\""), "overlap = 'two'"),
    (("order = \"shuffle\"", "order = \"random\""), "order = 'random'"),
    (("seed = 7", "seed = 1.5"), "seed = 1.5"),
    (("comment = true", "comment = \"yes\""), "comment = 'yes'"),
    (("title = \"Cats\"", "title = \"\""), "title = ''"),
    (("suggestion_column = \"label\"", "suggestion_column = \"\""), "suggestion_column = ''"),
    (("key = \"c\"", "key = \"cc\""), "labels[0].key = 'cc'"),
    (("key = \"c\"", "key = \"s\""), "labels[0].key = 's'"),
    (("key = \"c\"", "key = \"2\""), "labels.key = '2'"),
    (("name = \"dog\"", "name = \"cat\""), "labels = 'cat'"),
    (("name = \"dog\"", "name = \"\""), "labels[1].name = ''"),
    (("title = \"Cats\"", "title = \"Cats\"\ncolour = \"red\""), "unknown key 'colour'"),
])
def test_each_bad_task_value_is_named(tmp_path: Path, change: tuple[str, str], expected: str) -> None:
    old, new = change
    path = write_task(tmp_path, GOOD_TASK.replace(old, new, 1))
    with pytest.raises(ConfigError) as err:
        load_task(path)
    assert expected in str(err.value)
    assert str(path) in str(err.value)


def test_task_without_labels(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="labels"):
        load_task(write_task(tmp_path, 'title = "x"\n'))


def test_task_file_missing_or_not_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="TASK_FILE=.*does not exist"):
        load_task(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_task(write_task(tmp_path, "title = "))


def test_defaults_off_spaces(tmp_path: Path) -> None:
    settings = load_settings({"DATA_DIR": str(tmp_path)})
    assert settings.auth_mode == "local"
    assert settings.admins == frozenset({"local"})
    assert settings.db_path == tmp_path / "annotator.duckdb"
    assert settings.lease_ttl == 300 and settings.prefetch_depth == 4 and settings.image_max_side == 1280


def test_defaults_on_spaces(tmp_path: Path) -> None:
    settings = load_settings({"DATA_DIR": str(tmp_path), "SPACE_ID": "org/space", "ADMINS": "ann, bob"})
    assert settings.auth_mode == "hf"
    assert settings.admins == frozenset({"ann", "bob"})


def test_snapshot_mode_keeps_live_file_on_local_disk(tmp_path: Path) -> None:
    settings = load_settings({"DATA_DIR": str(tmp_path / "d"), "DB_MODE": "snapshot", "CACHE_DIR": str(tmp_path / "c")})
    assert settings.db_path == tmp_path / "c" / "annotator.duckdb"


@pytest.mark.parametrize("name, value, expected", [
    ("AUTH_MODE", "github", "AUTH_MODE='github' is not allowed; use one of: hf, password, local"),
    ("DB_MODE", "wal", "DB_MODE='wal' is not allowed"),
    ("LEASE_TTL", "soon", "LEASE_TTL='soon' is not a number"),
    ("LEASE_TTL", "0", "LEASE_TTL='0' is too small"),
    ("PREFETCH_DEPTH", "2.5", "PREFETCH_DEPTH='2.5' is not a whole number"),
    ("IMAGE_MAX_SIDE", "10", "IMAGE_MAX_SIDE='10' is too small"),
    ("EXPORT_EVERY", "-1", "EXPORT_EVERY='-1' is too small"),
    ("EXPORT_REPO", "just-a-name", "EXPORT_REPO='just-a-name' is not a dataset id"),
    ("EXPORT_PRIVATE", "maybe", "EXPORT_PRIVATE='maybe' is not a yes/no value"),
    ("SOURCE_DIR", "/no/such/folder", "SOURCE_DIR='/no/such/folder' is not a folder"),
    ("SNAPSHOT_EVERY", "0", "SNAPSHOT_EVERY='0' is too small"),
    ("MAX_COMMENT_CHARS", "x", "MAX_COMMENT_CHARS='x' is not a whole number"),
])
def test_each_bad_setting_is_named(tmp_path: Path, name: str, value: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({"DATA_DIR": str(tmp_path), name: value})
    assert expected in str(err.value)


def test_secrets_are_masked_in_public_items(tmp_path: Path) -> None:
    settings = load_settings({"DATA_DIR": str(tmp_path), "HF_TOKEN": "hf_secret_value", "SECRET_KEY": "k"})
    shown = settings.public_items()
    assert "hf_secret_value" not in repr(shown) and "hf_secret_value" not in repr(settings)
    assert shown["HF_TOKEN"] == "(set, hidden)"


def test_keys_past_nine_labels_are_assigned_automatically(tmp_path: Path) -> None:
    """Issue 14.7: a task with more than nine labels needed invented keys (`labels[9].key = ''`)."""
    from annotator.task import AUTO_KEYS

    names = [f"class {i}" for i in range(30)]
    text = 'title = "Many"\n' + "".join(f'\n[[labels]]\nname = "{n}"\n' for n in names)
    task = load_task(write_task(tmp_path, text))
    keys = [label.key for label in task.questions[0].labels]
    assert keys[:12] == list("1234567890ab")
    assert len(set(keys)) == 30 and not {"s", "c", "g", "?"} & set(keys)  # no action key, none kept for C/G
    assert keys == list(AUTO_KEYS[:30])
    # past the 33 keys there are, a label has no key (a button still answers it)
    text = 'title = "More"\n' + "".join(f'\n[[labels]]\nname = "l{i}"\n' for i in range(35))
    assert [label.key for label in load_task(write_task(tmp_path, text)).questions[0].labels][32:] == ["z", "", ""]


def test_explicit_keys_are_still_checked_beside_automatic_ones(tmp_path: Path) -> None:
    many = 'title = "Many"\n' + "".join(f'\n[[labels]]\nname = "l{i}"\n' for i in range(11))
    # the 12th label takes "a" explicitly, which the 11th got by its position: the message says why
    with pytest.raises(ConfigError) as err:
        load_task(write_task(tmp_path, many + '\n[[labels]]\nname = "x"\nkey = "a"\n'))
    assert "labels.key = 'a'" in str(err.value) and "by its position" in str(err.value)
    with pytest.raises(ConfigError, match=r"labels\[11\]\.key = 's'"):
        load_task(write_task(tmp_path, many + '\n[[labels]]\nname = "x"\nkey = "s"\n'))
    with pytest.raises(ConfigError, match=r"labels\[11\]\.key = '\?'"):
        load_task(write_task(tmp_path, many + '\n[[labels]]\nname = "x"\nkey = "?"\n'))
    task = load_task(write_task(tmp_path, many + '\n[[labels]]\nname = "x"\nkey = "k"\n'))
    labels = task.questions[0].labels
    assert labels[-1].key == "k" and labels[10].key == "a"


@pytest.mark.parametrize("raw, level", [("", "INFO"), ("debug", "DEBUG"), (" Warning ", "WARNING"),
                                        ("CRITICAL", "CRITICAL")])
def test_log_level_takes_the_standard_names_in_any_case(raw: str, level: str) -> None:
    from annotator.config import log_level

    assert log_level({"LOG_LEVEL": raw}) == level
    assert log_level({}) == "INFO"


@pytest.mark.parametrize("raw", ["foo", "debug"])
def test_app_refuses_a_bad_log_level_in_one_line(tmp_path: Path, raw: str) -> None:
    """`logging` took only capitals and raised a bare ValueError: a traceback and exit code 1.

    A good one (`debug`) goes on to the next setting, here the port, which is refused with its own line:
    so the test does not start a server.
    """
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "LOG_LEVEL": raw, "GRADIO_SERVER_PORT": "0x", "DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run([sys.executable, str(root / "app.py")], cwd=root, env=env, capture_output=True,
                          text=True, timeout=60)
    output = done.stdout + done.stderr
    assert done.returncode == 2 and "Traceback" not in output, output[-3000:]
    (line,) = done.stderr.splitlines()
    expected = "LOG_LEVEL='foo' is not allowed" if raw == "foo" else "GRADIO_SERVER_PORT='0x'"
    assert line.startswith(f"annotator cannot start: {expected}"), line
    if raw == "foo":
        assert "DEBUG, INFO, WARNING, ERROR, CRITICAL" in line
