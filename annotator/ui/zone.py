"""Times on the dashboard in the viewer's own time zone, each labelled with that zone's name.

The server keeps times as naive UTC. Gradio's plots are drawn by Vega in the
browser, which shows a time axis in the browser's zone, while the text the
server writes (the status line, the tables, the health box) would be in the
server's. So every dashboard event sends the browser's IANA zone name
(`ZONE_JS`, run by Gradio in the page before the event is sent, into a hidden
textbox that is the event's last input), and the server writes every time in
that zone with its name beside it; the plot's axis title names it too. A
name the server does not know (or none, as from a script) means UTC, and says so.
"""

from __future__ import annotations

from datetime import datetime, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

UTC = "UTC"
# Gradio's `js=` on an event: receives the inputs' values and returns them; the last input is the zone box
ZONE_JS = "(...values) => [...values.slice(0, -1), Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC']"


class ViewerZone:
    """A time zone by IANA name (UTC when the name is unknown or missing)."""

    def __init__(self, name: str | None = None) -> None:
        self.name, self.tz = UTC, timezone.utc
        if name and len(name) <= 64 and name != UTC:
            try:
                self.tz: tzinfo = ZoneInfo(name)
                self.name = name
            except (ZoneInfoNotFoundError, ValueError):
                pass

    def local(self, at: datetime) -> datetime:
        return (at if at.tzinfo else at.replace(tzinfo=timezone.utc)).astimezone(self.tz)

    def time(self, at: datetime) -> str:
        """`18:56:00 (Asia/Tokyo)`."""
        return f"{self.local(at):%H:%M:%S} ({self.name})"

    def stamp(self, at: datetime | None, labelled: bool = True) -> str:
        """`2026-12-07 18:56:00 (Asia/Tokyo)`; `never` for None; without the name for a column that names it."""
        if at is None:
            return "never"
        return f"{self.local(at):%Y-%m-%d %H:%M:%S}" + (f" ({self.name})" if labelled else "")

    def column(self, title: str) -> str:
        """A table column's title that names the zone of its times."""
        return f"{title} ({self.name})"
