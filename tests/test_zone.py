"""`ViewerZone`: the dashboard's times in the viewer's zone, named; an unknown name means UTC, named too."""

from __future__ import annotations

from datetime import datetime, timezone

from annotator.ui.zone import ViewerZone

AT = datetime(2026, 12, 6, 17, 56, 5)  # naive: the server's times are UTC


def test_times_in_the_viewers_zone_say_which() -> None:
    tokyo = ViewerZone("Asia/Tokyo")
    assert tokyo.time(AT) == "02:56:05 (Asia/Tokyo)"
    assert tokyo.stamp(AT) == "2026-12-07 02:56:05 (Asia/Tokyo)"
    assert tokyo.stamp(AT, labelled=False) == "2026-12-07 02:56:05"
    assert tokyo.stamp(AT.replace(tzinfo=timezone.utc)) == tokyo.stamp(AT)
    assert tokyo.column("last active") == "last active (Asia/Tokyo)"
    assert tokyo.stamp(None) == "never"


def test_an_unknown_or_missing_zone_is_utc_and_says_so() -> None:
    for name in (None, "", "Mars/Olympus", "../../etc/passwd", "x" * 200, "UTC"):
        zone = ViewerZone(name)
        assert zone.name == "UTC" and zone.time(AT) == "17:56:05 (UTC)", name
