"""Debian's Chromium under Playwright for the browser tests: one launch, one rule for a missing browser.

Five test modules drive Chromium; each used to carry its own copy of the
path, the flags and the "no browser" logic, and the copies drifted. Here:
without playwright or chromium (or with a chromium that does not start), a
test fails when ANNOTATOR_REQUIRE_BROWSER=1 (CI, scripts/test.sh) or when
the caller passes `require=True`, and is skipped otherwise. Never
`playwright install`: the browser is the system's (CHROMIUM, default
/usr/bin/chromium).

Usage, in a test module::

    @pytest.fixture(scope="module")
    def browser():
        with chromium(extra_args=["--ignore-certificate-errors"]) as b:
            yield b
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, NoReturn, Sequence

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# headless on a busy CI machine, and no traffic of Chromium's own off loopback
BASE_ARGS = ("--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--no-first-run")


def no_browser(reason: str, *, require: bool = False) -> NoReturn:
    """Fail (CI, or `require`) or skip the test: the browser it needs cannot run."""
    if require or os.environ.get("ANNOTATOR_REQUIRE_BROWSER") == "1":
        pytest.fail(f"ANNOTATOR_REQUIRE_BROWSER=1 but {reason}" if not require else reason)
    pytest.skip(reason)


def check_browser(*, require: bool = False) -> None:
    """Fail or skip (see `no_browser`) unless playwright imports and chromium is there; for a fixture that
    starts servers for a browser, so they are not started for nothing."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        no_browser(f"playwright is not installed ({exc}); pip install -r requirements-test.txt", require=require)
    if not shutil.which(CHROMIUM):
        no_browser(f"no chromium at {CHROMIUM} (apt-get install chromium)", require=require)


@contextmanager
def chromium(extra_args: Sequence[str] = (), *, require: bool = False) -> Iterator[Browser]:
    """A headless Chromium with BASE_ARGS + `extra_args`, closed on exit; fails or skips without one."""
    check_browser(require=require)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[*BASE_ARGS, *extra_args])
        except Exception as exc:  # noqa: BLE001 - a broken install counts as missing
            no_browser(f"chromium at {CHROMIUM} does not start: {exc}", require=require)
        yield browser
        browser.close()


@contextmanager
def chromium_profile(profile: Path, extra_args: Sequence[str] = (), *, require: bool = False,
                     **options: Any) -> Iterator[BrowserContext]:
    """Like `chromium`, but a persistent context on the profile folder `profile` (so its Preferences
    apply); `options` go to Playwright's launch_persistent_context."""
    check_browser(require=require)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        try:
            context = p.chromium.launch_persistent_context(
                str(profile), executable_path=CHROMIUM, headless=True, args=[*BASE_ARGS, *extra_args], **options)
        except Exception as exc:  # noqa: BLE001 - a broken install counts as missing
            no_browser(f"chromium at {CHROMIUM} does not start: {exc}", require=require)
        yield context
        context.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """A Chromium for a test module; a module uses it by importing the name (`from browserhelpers import
    browser`)."""
    with chromium() as b:
        yield b
