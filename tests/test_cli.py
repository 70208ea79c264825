"""`python -m annotator`: what its messages tell the person at the terminal; no network, no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

from annotator import cli  # noqa: E402
from annotator.store import Store  # noqa: E402
from ingesthelpers import png  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def run_module(args: list[str], env: dict[str, str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """`python -m annotator ARGS` in its own session: no controlling terminal, as in a script or a Space."""
    return subprocess.run([sys.executable, "-m", "annotator", *args], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60, start_new_session=True, **kwargs)


# --- adduser ---------------------------------------------------------------------------------

def test_adduser_without_a_terminal_says_how_to_pass_the_password(tmp_path: Path) -> None:
    """It was getpass's warning and an EOFError traceback."""
    passwords = tmp_path / "passwords.json"
    done = run_module(["adduser", "alice"], {"PASSWORD_FILE": str(passwords)}, stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "Warning" not in done.stderr, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: there is no terminal") and "--password-stdin" in line, line
    assert "python -m annotator adduser alice --password-stdin" in line
    assert not passwords.exists()


def test_adduser_password_stdin_with_nothing_on_it(tmp_path: Path) -> None:
    done = run_module(["adduser", "alice", "--password-stdin"], {"PASSWORD_FILE": str(tmp_path / "p.json")},
                      stdin=subprocess.DEVNULL)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    (line,) = done.stderr.splitlines()
    assert "read nothing" in line and "--password-stdin" in line, line


def test_adduser_says_a_running_app_needs_a_restart(tmp_path: Path) -> None:
    """The app reads PASSWORD_FILE once, at start: "alice can now sign in" was untrue while it ran."""
    passwords = tmp_path / "passwords.json"
    done = run_module(["adduser", "alice", "--password-stdin"],
                      {"PASSWORD_FILE": str(passwords), "AUTH_MODE": "password"}, input="long enough\n")
    assert done.returncode == 0, done.stderr
    assert "can now sign in" not in done.stdout
    assert "restart" in done.stdout and str(passwords) in done.stdout, done.stdout
    assert "AUTH_MODE" not in done.stdout  # the note is for a mode that asks for no password
    assert set(json.loads(passwords.read_text())) == {"alice"}
    done = run_module(["adduser", "bob", "--password-stdin"],
                      {"PASSWORD_FILE": str(passwords), "AUTH_MODE": "local"}, input="long enough\n")
    assert done.returncode == 0 and "AUTH_MODE=password" in done.stdout, done.stdout


# --- ingest --dataset ------------------------------------------------------------------------

@pytest.fixture
def settings_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "data"
    monkeypatch.setenv("DATA_DIR", str(data))
    monkeypatch.setenv("TASK_FILE", str(ROOT / "data" / "task.toml"))
    for name in ("SOURCE_DIR", "SOURCE_DATASET", "SOURCE_CONFIG", "SOURCE_SPLIT", "DB_MODE", "STORE_URL",
                 "HF_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return data


def _no_such_dataset(*args: Any, **kwargs: Any) -> Any:
    raise FileNotFoundError(f"Dataset '{args[0]}' doesn't exist on the Hub")


def test_ingest_dataset_failure_names_the_option_typed(settings_env: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """It said SOURCE_DATASET='X' for `--dataset X`, a setting the person never set."""
    import datasets

    monkeypatch.setattr(datasets, "load_dataset", _no_such_dataset)
    code = cli.main(["ingest", "--dataset", "me/typo", "--split", "test", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "cannot load the dataset (--dataset me/typo, --split test)" in err, err
    assert "SOURCE_DATASET" not in err and "SOURCE_SPLIT" not in err, err


def test_ingest_dataset_failure_names_the_setting_when_it_came_from_one(
        settings_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import datasets

    monkeypatch.setattr(datasets, "load_dataset", _no_such_dataset)
    monkeypatch.setenv("SOURCE_DATASET", "me/typo")
    monkeypatch.setenv("SOURCE_CONFIG", "small")
    assert cli.main(["ingest", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "(SOURCE_DATASET='me/typo', SOURCE_CONFIG='small', split 'train', the default: --split to change it)" \
        in err, err
    assert cli.main(["ingest", "--dataset", "me/other", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "(--dataset me/other, SOURCE_CONFIG='small', split 'train', the default: --split to change it)" in err, err
    monkeypatch.setenv("SOURCE_SPLIT", "validation")
    assert cli.main(["ingest", "--dataset", "me/other", "--config", "big", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "(--dataset me/other, --config big, SOURCE_SPLIT='validation')" in err, err


def test_ingest_dataset_keeps_its_record_keys(settings_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Loaded by the command now, a dataset's records keep the keys ingest gave them, so a rerun adds nothing."""
    import datasets
    from datasets import Dataset, Features, Image as ImageFeature, Value

    paths = []
    for i, colour in enumerate([(200, 0, 0), (0, 200, 0)]):
        path = tmp_path / f"img{i}.png"
        path.write_bytes(png(colour))
        paths.append(str(path))
    local = Dataset.from_dict({"image": paths, "label": ["circle", "square"]},
                              features=Features({"image": ImageFeature(), "label": Value("string")}))
    asked = []

    def load(name: str, config: str | None, **kwargs: Any) -> Dataset:
        asked.append((name, config, kwargs))
        return local

    monkeypatch.setattr(datasets, "load_dataset", load)
    assert cli.main(["ingest", "--dataset", "me/shapes", "--config", "c1", "--no-progress"]) == 0
    assert "2 added" in capsys.readouterr().out
    assert cli.main(["ingest", "--dataset", "me/shapes", "--config", "c1", "--no-progress"]) == 0
    assert "0 added, 2 already present" in capsys.readouterr().out
    assert asked[0] == ("me/shapes", "c1", {"split": "train", "streaming": True})
    store = Store(settings_env / "annotator.duckdb")
    try:
        assert store.source_keys() == {"hub:me/shapes:c1:train:0", "hub:me/shapes:c1:train:1"}
    finally:
        store.close()
