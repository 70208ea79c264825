"""The real app against a local stand-in for the Hub: answers pushed at shutdown, a wiped disk restored at start.

This is the promise to organizers on a Space without persistent storage: the
export is the second copy, and a fresh start brings every answer back.
"""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import pytest

from apphelpers import start_app
from clients import ApiUser
from fakehub import FakeHub

REPO = "org/workshop-labels"
TASK = """
title = "Export drill"
kind = "single_label"
overlap = 1
suggestion_column = "label"

[[labels]]
name = "circle"

[[labels]]
name = "square"
"""


def stopped_cleanly(server) -> None:
    # uvicorn re-raises the SIGTERM it handled once shutdown is done, hence -15
    assert server.stop(signal.SIGTERM) in (0, -signal.SIGTERM), server.log()
    assert "closed: every acknowledged answer is committed" in server.log()


@pytest.fixture
def hub():
    with FakeHub(token="hf_export_test") as hub:
        yield hub


def make_images(folder: Path, n: int) -> None:
    from PIL import Image
    for i in range(n):
        label = "circle" if i % 2 else "square"
        (folder / label).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40 + i, 30), (i * 20 % 255, 90, 160)).save(folder / label / f"img{i:02d}.png")


def test_shutdown_pushes_and_an_empty_disk_is_restored(hub: FakeHub, tmp_path: Path) -> None:
    images = tmp_path / "source"
    make_images(images, 6)
    task = tmp_path / "task.toml"
    task.write_text(TASK)
    env = {**hub.client_env(tmp_path / "home"), "EXPORT_REPO": REPO, "EXPORT_EVERY": "60",
           "SOURCE_DIR": str(images), "TASK_FILE": str(task), "AUTH_MODE": "local"}
    data_dir = tmp_path / "data"
    data_dir.mkdir()

    server = start_app(data_dir, env=env)
    answered: dict[int, str] = {}
    try:
        with ApiUser(server.url, "local") as user:
            view = user.next()
            for label in ("circle", "square", "circle"):
                item = view["item"]
                answered[item["record_id"]] = label
                view = user.submit(item["record"], [label])
    finally:
        stopped_cleanly(server)
    assert "hf_export_test" not in server.log()

    pushed = hub.files(REPO)
    assert any(path.startswith("records/") or "records" in path for path in pushed if path.endswith(".parquet"))
    assert "README.md" in pushed and hub.repo(REPO)["private"] is True
    assert b"hf_export_test" not in pushed["README.md"]

    shutil.rmtree(data_dir)  # the Space restarted without persistent storage
    data_dir.mkdir()
    server = start_app(data_dir, env=env)
    try:
        assert "restore: restored 6 records and 3 answers" in server.log()
        with ApiUser(server.url, "local") as user:
            progress = user.progress()
            assert progress["mine_total"] == 3 and progress["team_complete"] == 3
            view = user.next()
            assert view["state"] == "ready" and view["item"]["record_id"] not in answered
    finally:
        stopped_cleanly(server)
