"""Sign-in inside the Hub's frame, in Chromium with third-party cookies blocked (issue 20, item 5).

A Space page on huggingface.co frames the app, so the app's cookies are
third-party there. `fakeprovider.StandInHub` plays huggingface.co on
loopback over TLS (the Space page and the OpenID provider); the real app runs
behind a TLS front as https://space.test:<port>. Each test signs a person in
and has them label one image with a key, then asks the server what it stored:

- hf mode, in the frame: the real Gradio/authlib sign-in (SYSTEM=spaces,
  OAUTH_* pointing at the stand-in provider), then sign-out in the frame;
- hf mode, at the top level;
- hf mode, a session cookie stored before the cookies were partitioned is
  still cleared by sign-out;
- password mode, in the frame: Gradio's login form, then Gradio's sign-out;
- both modes, in the frame of a browser that refuses the app's cookies there even partitioned (a
  Chromium profile whose settings block the app's site's cookies when framed by the Hub): the page says
  so and offers the app in its own tab (issue 14), where signing in works.

Every browser context here is Playwright's default (Incognito-like): this
Chromium blocks third-party cookies there, and each frame test first checks
that it does, so a browser that lets them through fails loudly instead of
passing for the wrong reason. Without chromium the tests skip, or fail when
ANNOTATOR_REQUIRE_BROWSER=1 (CI).
"""

from __future__ import annotations

import json

import pytest

from browserhelpers import BASE_ARGS, CHROMIUM, chromium
from clients import ApiUser, add_users, make_images, start_many, write_task
from fakeprovider import SPACE_HOST, StandInHub, chromium_args, hold_port, port_of
from oauth_cookies import oauth_space_env, playwright_cookie

WAIT = 20_000  # ms; generous, the machine may be busy
SIGN_IN = "Sign in with Hugging Face"

# In a cross-site frame with third-party cookies blocked, the page cannot set an unpartitioned cookie.
THIRD_PARTY_COOKIE_STORED = """() => {
  document.cookie = "probe3p=1; Path=/probe; SameSite=None; Secure";
  return document.cookie.includes("probe3p");
}"""


@pytest.fixture(scope="module")
def browser():
    with chromium(chromium_args()) as b:
        yield b


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with StandInHub(tmp_path_factory.mktemp("standin-hub")) as found:
        yield found


@pytest.fixture(scope="module")
def apps(hub, tmp_path_factory):
    """An hf-mode app on a simulated Space whose provider is the stand-in, and a password-mode app; both behind TLS."""
    ports = {"hf": hold_port(), "password": hold_port()}  # held: nobody takes them while the apps start
    specs = []
    for mode in ("hf", "password"):
        base = tmp_path_factory.mktemp(f"frame-{mode}")
        make_images(base / "source", 12)
        env = {"SOURCE_DIR": str(base / "source"), "TASK_FILE": str(write_task(base / "task.toml", overlap=1))}
        if mode == "hf":
            env.update({**oauth_space_env(), **hub.space_env(port_of(ports["hf"]))})
        else:
            env["AUTH_MODE"] = "password"
            add_users(base / "data" / "passwords.json", ["erin"])
        specs.append((base / "data", env))
    servers = dict(zip(("hf", "password"), start_many(*specs)))
    for mode, server in servers.items():
        hub.front_app(mode, ports[mode], server.url)
    yield servers
    for server in servers.values():
        server.stop()


def label_one_image(view, page) -> None:
    """Press label key 1 in `view` (the page or the app's frame); wait until the answer is saved."""
    from playwright.sync_api import expect

    image = view.locator("#ann-img")
    expect(image).to_be_visible(timeout=WAIT)
    before = image.get_attribute("data-record")
    view.locator("#ann-progress").click()  # focus inside the app (its frame), on something without an action
    page.keyboard.press("1")
    expect(image).not_to_have_attribute("data-record", before, timeout=WAIT)
    expect(view.locator("#ann-saved")).to_have_text("All answers saved", timeout=WAIT)


def expect_signed_out(view) -> None:
    """The server says `view` is signed out (the page's sign-in note; the button alone shows before the page loads)."""
    from playwright.sync_api import expect

    expect(view.locator("#ann-signin")).to_be_visible(timeout=WAIT)
    expect(view.get_by_role("button", name=SIGN_IN)).to_be_visible(timeout=WAIT)


def stored_answers(server, user: str) -> int:
    """How many answers the server holds for `user` (asked as that user, over HTTP)."""
    with ApiUser.with_oauth(server.url, user) as who:
        return who.progress()["mine_total"]


def assert_third_party_cookies_blocked(frame) -> None:
    assert not frame.evaluate(THIRD_PARTY_COOKIE_STORED), (
        "this browser stored a third-party cookie in the cross-site frame: the test would prove nothing")


def expect_no_frame_notice(view) -> None:
    """The page did not say that its cookies are refused (its script runs before the page's load event)."""
    from playwright.sync_api import expect

    view.wait_for_load_state("load")
    expect(view.locator("#frame-cookie-notice")).to_have_count(0)


def app_frame(page):
    """The app's frame in the stand-in Space page (the same Frame across its navigations)."""
    page.wait_for_selector("#space", timeout=WAIT)
    return page.locator("#space").element_handle().content_frame()


def test_hf_sign_in_inside_the_hubs_frame_then_annotate_and_sign_out(browser, hub, apps):
    from playwright.sync_api import expect

    hub.user, before = "alice", len(hub.authorized)
    ctx = browser.new_context(viewport={"width": 1200, "height": 1000})
    page = ctx.new_page()
    page.goto(hub.space_page_url("hf"))
    frame = app_frame(page)
    expect_signed_out(frame)
    assert_third_party_cookies_blocked(frame)
    expect_no_frame_notice(frame)  # partitioned cookies work here: nothing to warn about

    frame.get_by_role("button", name=SIGN_IN).click()
    expect(frame.get_by_role("button", name="Logout (alice)")).to_be_visible(timeout=WAIT)
    assert hub.authorized[before:] == ["alice"]  # the provider issued one token: no loop
    assert page.url == hub.space_page_url("hf")  # it all happened inside the frame
    session = [c for c in ctx.cookies() if c["name"] == "session"]
    assert session and all(c.get("partitionKey") for c in session), ctx.cookies()

    label_one_image(frame, page)
    assert stored_answers(apps["hf"], "alice") == 1

    frame.get_by_role("button", name="Logout (alice)").click()
    expect_signed_out(frame)
    assert not [c for c in ctx.cookies() if c["name"] == "session"], ctx.cookies()
    ctx.close()


def test_hf_sign_in_at_the_top_level(browser, hub, apps):
    from playwright.sync_api import expect

    hub.user = "bob"
    ctx = browser.new_context(viewport={"width": 1200, "height": 1000})
    page = ctx.new_page()
    page.goto(hub.spaces["hf"] + "/")
    page.get_by_role("button", name=SIGN_IN).click()
    expect(page.get_by_role("button", name="Logout (bob)")).to_be_visible(timeout=WAIT)
    assert page.url.startswith(hub.spaces["hf"])
    label_one_image(page, page)
    assert stored_answers(apps["hf"], "bob") == 1
    ctx.close()


def test_sign_out_clears_a_session_cookie_stored_before_partitioning(browser, hub, apps):
    """A person signed in before the cookies were partitioned holds an unpartitioned `session`: sign-out clears it."""
    from playwright.sync_api import expect

    ctx = browser.new_context(viewport={"width": 1200, "height": 1000})
    ctx.add_cookies([playwright_cookie("carol", host=SPACE_HOST)])
    page = ctx.new_page()
    page.goto(hub.spaces["hf"] + "/")
    expect(page.get_by_role("button", name="Logout (carol)")).to_be_visible(timeout=WAIT)
    page.get_by_role("button", name="Logout (carol)").click()
    expect_signed_out(page)
    page.reload()
    expect_signed_out(page)
    assert not [c for c in ctx.cookies() if c["name"] == "session"], ctx.cookies()
    ctx.close()


def test_password_sign_in_inside_the_hubs_frame_then_annotate_and_sign_out(browser, hub, apps):
    from playwright.sync_api import expect

    ctx = browser.new_context(viewport={"width": 1200, "height": 1000})
    page = ctx.new_page()
    page.goto(hub.space_page_url("password"))
    frame = app_frame(page)
    expect(frame.get_by_label("username")).to_be_visible(timeout=WAIT)
    assert_third_party_cookies_blocked(frame)
    frame.get_by_label("username").fill("erin")
    frame.get_by_label("password").fill("pw-erin-secret")  # clients.add_users
    frame.get_by_role("button", name="Login").click()
    label_one_image(frame, page)
    expect_no_frame_notice(frame)
    tokens = [c for c in ctx.cookies() if c["name"].startswith("access-token-")]
    assert tokens and all(c.get("partitionKey") for c in tokens), ctx.cookies()
    with ApiUser.with_password(apps["password"].url, "erin", "pw-erin-secret") as erin:
        assert erin.progress()["mine_total"] == 1

    # Gradio's sign-out, asked by the app's own page, clears the partitioned token cookie in the frame. (Fetched,
    # not followed: Gradio redirects to a URL built from X-Forwarded-Proto, which a Space's proxy sends and the
    # TLS front here does not.)
    assert frame.evaluate("fetch('/logout', {redirect: 'manual'}).then(r => r.type)") == "opaqueredirect"
    frame.goto(hub.spaces["password"] + "/")
    expect(frame.get_by_label("username")).to_be_visible(timeout=WAIT)
    assert not [c for c in ctx.cookies() if c["name"].startswith("access-token-")], ctx.cookies()
    ctx.close()


PARTITIONED_COOKIE_STORED = """() => {
  document.cookie = "probechips=1; Path=/probe; SameSite=None; Secure; Partitioned";
  return document.cookie.includes("probechips");
}"""


@pytest.mark.parametrize("mode", ["hf", "password"])
def test_frame_that_refuses_the_cookies_offers_the_app_in_its_own_tab(browser, hub, apps, mode, tmp_path):
    """Where the browser refuses the app's cookies inside the Hub's frame, even partitioned, signing in there
    cannot work: the page says so and links to the app's own address in a new tab, where it works."""
    from playwright.sync_api import expect

    space = hub.spaces[mode]
    # Chromium's cookie setting "block" for the app's site when the top-level site is the Hub (and only then)
    (tmp_path / "Default").mkdir()
    (tmp_path / "Default" / "Preferences").write_text(json.dumps(
        {"profile": {"content_settings": {"exceptions": {"cookies": {f"{space},{hub.base}": {"setting": 2}}}}}}))
    # a second Chromium on that profile, from the module's Playwright (one sync Playwright per thread)
    ctx = browser.browser_type.launch_persistent_context(
        str(tmp_path), executable_path=CHROMIUM, headless=True, args=[*BASE_ARGS, *chromium_args()],
        viewport={"width": 1200, "height": 1000})
    try:
        page = ctx.new_page()
        page.goto(hub.space_page_url(mode))
        frame = app_frame(page)
        notice = frame.locator("#frame-cookie-notice")
        expect(notice).to_be_visible(timeout=WAIT)
        assert not frame.evaluate(PARTITIONED_COOKIE_STORED), "the profile let a partitioned cookie through"
        expect(notice).to_contain_text("blocks the app's sign-in cookie")
        link = notice.get_by_role("link", name="Open the app in its own tab")
        assert link.get_attribute("href") == space + "/"
        assert link.get_attribute("target") == "_blank"
        assert "noopener" in link.get_attribute("rel")

        with page.expect_popup() as popup_info:
            link.click()
        top = popup_info.value
        top.wait_for_load_state()
        assert top.url.startswith(space + "/")
        expect_no_frame_notice(top)
        if mode == "password":  # at the top level the cookie is first-party: signing in works
            top.get_by_label("username").fill("erin")
            top.get_by_label("password").fill("pw-erin-secret")
            top.get_by_role("button", name="Login").click()
            expect(top.locator("#ann-img")).to_be_visible(timeout=WAIT)
    finally:
        ctx.close()
