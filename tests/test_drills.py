"""Short versions of the fault drills in bench/drills.py (each well under a minute).

- kill -9 of the server under load, restart on the same DATA_DIR: no answer the
  page reported saved is lost, and the annotators carry on;
- storage that fails while the server runs and then recovers: clicks go on,
  the page never says saved while commits fail, it says that saving fails,
  and everything queued is written after recovery without a restart;
- a DATA_DIR that cannot be written (or is full) at start: a clear message,
  a non-zero exit, nothing created.

The long versions: `python bench/drills.py all` (20 kill rounds).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import drills  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None and shutil.which("cc") is None,
                                reason="the drills build LD_PRELOAD shims with gcc")


def _explain(result: dict) -> str:
    return "\n".join(f"{k}: {v}" for k, v in result.items())


def test_kill9_under_load_loses_no_saved_answer(tmp_path: Path) -> None:
    result = drills.kill9(tmp_path, rounds=1, users=3, delay_ms=30, seed=7, log=lambda *_: None)
    assert result["saved_lost"] == 0, _explain(result)
    assert result["rounds"][0]["clicks"] > 0, _explain(result)
    assert result["final"]["clicks"] > 0, _explain(result)  # annotators continue after the restart
    assert result["final"]["accepted_lost_on_clean_stop"] == 0, _explain(result)
    assert result["ok"], _explain(result)


def test_disk_full_mid_run_recovers_without_restart(tmp_path: Path) -> None:
    """Writes fail with ENOSPC for 4 s, then succeed again."""
    result = drills.failing_storage(tmp_path, mode="write", users=3, healthy_s=1.5, failing_s=3.0,
                                    recover_within_s=15, log=lambda *_: None)
    assert result["false_acknowledgements"] == 0, _explain(result)
    assert result["failure_shown_on_page"] > 0, _explain(result)
    assert result["accepted_while_failing"] > 0, _explain(result)
    assert result["all_saved_after_recovery"], _explain(result)
    assert result["accepted_missing_after_stop"] == 0, _explain(result)
    assert result["ok"], _explain(result)


@pytest.fixture(scope="module")
def fsync_failure(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One run: fsync fails with EIO for 3 s in the running server, then succeeds again."""
    return drills.failing_storage(tmp_path_factory.mktemp("fsync-eio"), mode="sync", users=3, healthy_s=1.5,
                                  failing_s=3.0, recover_within_s=6, stop_timeout=3, log=lambda *_: None)


def test_fsync_errors_never_acknowledge_falsely(fsync_failure: dict) -> None:
    """Nothing is reported saved while commits fail, and the page and /healthz say that saving fails."""
    assert fsync_failure["false_acknowledgements"] == 0, _explain(fsync_failure)
    assert fsync_failure["failure_shown_on_page"] > 0, _explain(fsync_failure)
    assert fsync_failure["healthz_not_ok_while_failing"] > 0, _explain(fsync_failure)


def test_fsync_errors_mid_run_recover_without_restart(fsync_failure: dict) -> None:
    assert fsync_failure["all_saved_after_recovery"], _explain(fsync_failure)
    assert fsync_failure["accepted_missing_after_stop"] == 0, _explain(fsync_failure)
    assert fsync_failure["ok"], _explain(fsync_failure)


UNWRITABLE = ["under-a-file", "writes-fail", "fsync-fails", "read-only-mount", "full-disk"]


@pytest.mark.parametrize("case", UNWRITABLE)
def test_unwritable_data_dir_refuses_to_start(tmp_path: Path, case: str) -> None:
    if case in ("read-only-mount", "full-disk") and case not in drills.unwritable_cases(tmp_path):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    result = drills.unwritable(tmp_path / case, case, log=lambda *_: None)
    assert result["exit_code"] not in (0, None), _explain(result)
    assert result["ok"], _explain(result)
