"""axe-core accessibility scans of a page in the test browser, for the dashboard and the annotate page.

axe-core comes from the PyPI package `axe-playwright-python` (pinned in
requirements-test.txt, which bundles axe-core 4.12.1 as a file: no network at
test time). `serious_violations(page)` injects it into the page (or frame),
runs it, and returns the violations of impact serious or critical, each as
one readable line with the elements it names, so a failing assert says what
to fix.

Usage::

    from axehelpers import serious_violations
    assert not serious_violations(page, include="#tab-dashboard"), "..."
"""

from __future__ import annotations

from typing import Any

BLOCKING = ("serious", "critical")


def axe_violations(page: Any, include: str | None = None) -> list[dict[str, Any]]:
    """axe-core's violations on `page` (a Playwright Page or Frame), within the CSS selector `include`."""
    from axe_playwright_python.sync_playwright import Axe

    context = {"include": [[include]]} if include else None
    return list(Axe().run(page, context=context).response["violations"])


def describe(violation: dict[str, Any], limit: int = 5) -> str:
    where = "; ".join(" ".join(map(str, node["target"])) for node in violation["nodes"][:limit])
    more = len(violation["nodes"]) - limit
    return (f"[{violation['impact']}] {violation['id']}: {violation['help']} at {where}"
            + (f" (+{more} more)" if more > 0 else ""))


def serious_violations(page: Any, include: str | None = None) -> list[str]:
    """The serious and critical violations on `page` (within `include`), one line each."""
    return [describe(v) for v in axe_violations(page, include) if v.get("impact") in BLOCKING]
