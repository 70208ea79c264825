"""No records, no start (issue 11.6).

An empty or all-bad SOURCE_DIR used to start with 0 records and tell everyone
"All done" while the log said only "2 skipped". `python app.py` now exits with
code 2 and one message naming the setting, its value and every skipped file
with its reason, unless ALLOW_EMPTY says an empty start is intended.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from apphelpers import free_port
from clients import write_task

from annotator.config import ConfigError, load_settings
from annotator.runtime import Runtime

ROOT = Path(__file__).resolve().parent.parent


def env_for(tmp_path: Path, source: Path, **extra: str) -> dict[str, str]:
    return {"DATA_DIR": str(tmp_path / "data"), "CACHE_DIR": str(tmp_path / "cache"), "SOURCE_DIR": str(source),
            "TASK_FILE": str(write_task(tmp_path / "task.toml")), "AUTH_MODE": "local", **extra}


def run_app(env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    """`python app.py`; a start that serves instead of refusing is stopped and fails the test."""
    full = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_SERVER_NAME": "127.0.0.1",
            "GRADIO_SERVER_PORT": str(free_port()), **env}
    process = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=full, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"the app started (and served) with no record to annotate:\n{out[-2000:]}\n{err[-2000:]}")
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def test_an_all_bad_source_folder_refuses_to_start_naming_every_file(tmp_path: Path) -> None:
    source = tmp_path / "source"
    (source / "cats").mkdir(parents=True)
    (source / "cats" / "empty.png").write_bytes(b"")
    (source / "notes.txt").write_text("not an image")
    done = run_app(env_for(tmp_path, source))
    assert done.returncode == 2, done.stdout + done.stderr
    message = done.stderr
    assert f"SOURCE_DIR={str(source)!r} gave no usable image (2 skipped)" in message, message
    assert "  cats/empty.png: empty file\n" in message and "  notes.txt: not an image\n" in message
    assert "ALLOW_EMPTY=1" in message
    assert "Traceback" not in message
    assert not (tmp_path / "data" / "annotator.duckdb").exists()  # a refused start leaves nothing behind


def test_an_empty_source_folder_refuses_to_start(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    done = run_app(env_for(tmp_path, source))
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"SOURCE_DIR={str(source)!r} gave no usable image (it holds no image files)" in done.stderr


def test_allow_empty_starts_with_no_records(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "notes.txt").write_text("not an image")
    settings = load_settings(env_for(tmp_path, source, ALLOW_EMPTY="1"))
    assert settings.allow_empty and settings.public_items()["ALLOW_EMPTY"] == "true"
    runtime = Runtime.open(settings)
    try:
        assert runtime.store.record_count() == 0
    finally:
        runtime.close()
    with pytest.raises(ConfigError, match="ALLOW_EMPTY='maybe' is not a yes/no value"):
        load_settings(env_for(tmp_path, source, ALLOW_EMPTY="maybe"))


def test_the_refusal_names_the_dataset_setting_when_the_source_is_a_dataset(tmp_path: Path) -> None:
    from annotator.ingest import EmptySourceError, IngestReport
    settings = load_settings({"DATA_DIR": str(tmp_path / "d"), "SOURCE_DATASET": "someone/pictures",
                              "SOURCE_SPLIT": "test"})
    report = IngestReport("dataset someone/pictures [test]", skipped=[("test[0] (a.png)", "truncated")])
    message = str(EmptySourceError(settings, report))
    assert message.startswith("there is nothing to annotate: SOURCE_DATASET='someone/pictures' (split 'test') "
                              "gave no usable image (1 skipped):\n  test[0] (a.png): truncated\n")
    assert "ALLOW_EMPTY=1" in message


def test_a_source_set_after_the_first_start_is_named_as_not_read(tmp_path: Path, caplog) -> None:
    """Images are imported only into an empty database; a SOURCE_DIR changed later used to be ignored without
    a word, so an organizer waited for images that never came."""
    from clients import make_images

    make_images(tmp_path / "first", 3, size=(32, 24))
    make_images(tmp_path / "second", 2, size=(32, 24))
    Runtime.open(load_settings(env_for(tmp_path, tmp_path / "first"))).close()
    caplog.set_level("INFO", logger="annotator.runtime")
    runtime = Runtime.open(load_settings(env_for(tmp_path, tmp_path / "second")))
    try:
        assert runtime.store.record_count() == 3
    finally:
        runtime.close()
    said = [r.getMessage() for r in caplog.records if "already holds" in r.getMessage()]
    assert len(said) == 1 and "3 records" in said[0] and str(tmp_path / "second") in said[0], said
    assert "python -m annotator ingest" in said[0]
