"""A short run of bench/drills.py's poison drill: a crowd answers while one person posts an unstorable
answer every second; every poisoned answer is refused with a 400, nobody hears "not saved", nothing
accepted is lost. The long run and its figures: `python bench/drills.py poison --users 200`."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import drills  # noqa: E402


def test_poison_drill_short(tmp_path: Path) -> None:
    assert shutil.which("gcc") or shutil.which("cc"), "the drill builds bench/slowsync.c: install gcc"
    result = drills.poison(tmp_path, users=3, seconds=8, delay_ms=30, log=lambda *_: None)
    explain = "\n".join(f"{k}: {v}" for k, v in result.items())
    assert result["poison_sent"] >= 2 and result["poison_replies"] == {"400": result["poison_sent"]}, explain
    assert result["not_saved_reports"] == 0 and result["accepted_lost"] == 0, explain
    assert result["poison_stored"] == 0 and min(result["clicks"].values()) > 0, explain
