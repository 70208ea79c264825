"""Other websites cannot act as the signed-in person (issue 12.1, 20.3, 20.4), against the real server.

On a Space, Gradio reflects any Origin with credentials and the session
cookies are SameSite=None, so a page on another site that the person visits
could read their tickets, answer in their name, run admin endpoints, read the
password session's token and sign them out. The edge (annotator/ui/edge.py)
refuses every request a browser marks as coming from another site
(Sec-Fetch-Site, or Origin/Referer where a browser sends no Fetch Metadata)
except navigations to the pages (annotate, projector) and to sign-in. Scripts (no Origin, no
Sec-Fetch-*) and the app's own page keep working.
"""

from __future__ import annotations

import pytest

from edgehelpers import EVIL, SPACE_HOST, SPACE_ORIGIN, my_progress, password_client, space_client
from edgehelpers import servers  # noqa: F401,F811 - the module's fixture: both servers

# what a browser adds to a request another site's page makes (fetch, form, image, frame)
FROM_OTHER_SITES = {
    "fetch from another site": {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors", "Origin": EVIL},
    "no-cors fetch from another site": {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors",
                                        "Origin": EVIL},
    "another Space on the same site": {"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "cors",
                                       "Origin": "https://other-space.hf.space"},
    "older browser, Origin only": {"Origin": EVIL},
    "older browser, Origin null": {"Origin": "null"},
    "older browser, plain http origin of the Space": {"Origin": f"http://{SPACE_HOST}"},
    "older browser, Referer only": {"Referer": f"{EVIL}/page.html"},
}
OWN_PAGE = {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors", "Origin": SPACE_ORIGIN}


def test_a_preflight_from_another_site_gets_no_credentials(servers):
    """The issue's curl: Gradio answered with that origin and credentials allowed."""
    with space_client(servers["oauth"]) as c:
        for path in ("/ann/answer", "/gradio_api/queue/join", "/gradio_api/upload", "/gradio_api/call/progress"):
            r = c.options(path, headers={"Origin": EVIL, "Access-Control-Request-Method": "POST",
                                         "Access-Control-Request-Headers": "content-type"})
            assert r.status_code >= 400, (path, r.status_code)
            assert "access-control-allow-origin" not in r.headers, (path, r.headers)
            assert "access-control-allow-credentials" not in r.headers, (path, r.headers)


@pytest.mark.parametrize("kind", sorted(FROM_OTHER_SITES))
def test_click_routes_refuse_other_sites_and_change_nothing(servers, kind):
    """A ticket is not read and an answer is not taken when another site's page sends them."""
    headers = FROM_OTHER_SITES[kind]
    with space_client(servers["oauth"], "alice") as alice:
        before = my_progress(alice)
        view = alice.post("/ann/next", json={}, headers=OWN_PAGE).json()
        ticket = view["item"]["record"]
        r = alice.post("/ann/next", json={}, headers=headers)
        assert r.status_code == 403, (kind, r.status_code, r.text[:200])
        assert ticket not in r.text and "another site" in r.json()["error"]
        r = alice.post("/ann/answer", json={"ticket": ticket, "answer": ["circle"]}, headers=headers)
        assert r.status_code == 403, (kind, r.status_code, r.text[:200])
        assert "access-control-allow-origin" not in r.headers
        assert my_progress(alice) == before


@pytest.mark.parametrize("path, payload", [
    ("/gradio_api/call/progress", {"data": []}),
    ("/gradio_api/call/admin_settings", {"data": []}),
    ("/gradio_api/call/admin_release_user", {"data": ["alice"]}),
    ("/gradio_api/call/admin_set_final", {"data": [1, '{"label": "cat"}']}),
    ("/gradio_api/call/admin_clear_nickname", {"data": ["alice"]}),
    ("/gradio_api/queue/join", {"data": [], "fn_index": 0, "session_hash": "evil1", "event_data": None}),
])
def test_named_endpoints_and_gradio_events_refuse_other_sites(servers, path, payload):
    """Gradio's own routes too: an admin visiting another site does not run admin endpoints."""
    with space_client(servers["oauth"], "carol") as carol:
        for headers in FROM_OTHER_SITES.values():
            r = carol.post(path, json=payload, headers=headers)
            assert r.status_code == 403, (path, headers, r.status_code, r.text[:200])
        r = carol.get("/gradio_api/info", headers=FROM_OTHER_SITES["fetch from another site"])
        assert r.status_code == 403


def test_scripts_and_the_apps_own_page_keep_working(servers):
    """gradio_client and curl send no Origin; the page sends its own origin, as the proxy forwards it."""
    with space_client(servers["oauth"], "bob") as bob:
        assert bob.post("/ann/next", json={}).status_code == 200  # a script
        assert bob.post("/ann/next", json={}, headers=OWN_PAGE).status_code == 200
        # an older browser on the page: Origin only, which is the Space's https origin behind the proxy
        assert bob.post("/ann/next", json={}, headers={"Origin": SPACE_ORIGIN}).status_code == 200
        r = bob.post("/gradio_api/call/progress", json={"data": []})
        assert r.status_code == 200 and "event_id" in r.json()
        assert bob.get(f"/gradio_api/call/progress/{r.json()['event_id']}").text.count("event: complete") == 1
    with password_client(servers["password"], "bob") as bob:
        assert bob.post("/ann/next", json={}).status_code == 200


def test_the_page_and_sign_in_open_inside_another_sites_frame(servers):
    """The Hub frames the page from huggingface.co, and its OAuth callback arrives from there."""
    navigation = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "iframe"}
    with space_client(servers["oauth"]) as c:
        r = c.get("/", headers=navigation)
        assert r.status_code == 200 and "<html" in r.text.lower()
        # not a navigation: a script on another site reading the page is refused like any other read
        assert c.get("/", headers=FROM_OTHER_SITES["fetch from another site"]).status_code == 403


def test_only_the_pages_and_sign_in_may_be_opened_by_another_site():
    """The OAuth callback arrives as a navigation from huggingface.co (the simulated Space has no provider
    to sign in with, so this is checked on the rules themselves); the projector's page holds no data and is
    opened from links; nothing else is navigable from outside (its data route included)."""
    from annotator.ui.edge import Surface, cross_site_reason  # here: the other tests run on any version

    frame = {"sec-fetch-site": "cross-site", "sec-fetch-mode": "navigate", "host": SPACE_HOST}
    surface = Surface()
    for path in ("/", "/login/huggingface", "/login/callback", "/projector"):
        assert cross_site_reason({"method": "GET"}, frame, surface.rule(path)) is None, path
    for path in ("/logout", "/gradio_api/token", "/ann/next", "/gradio_api/info", "/config", "/healthz",
                 "/gradio_api/file=/tmp/x.csv", "/gradio_api/heartbeat/abc", "/ann-static/annotate.0123456789ab.js",
                 "/projector/data"):
        assert cross_site_reason({"method": "GET"}, frame, surface.rule(path)) is not None, path
    assert cross_site_reason({"method": "POST"}, frame, surface.rule("/login")) is not None


def test_the_password_sessions_token_is_for_the_apps_own_page_only(servers):
    """GET /gradio_api/token returns the HttpOnly session token: another site read it with the person's cookie."""
    with password_client(servers["password"], "alice") as alice:
        for kind, headers in FROM_OTHER_SITES.items():
            r = alice.get("/gradio_api/token", headers=headers)
            assert r.status_code == 403, (kind, r.status_code, r.text[:100])
            assert "token" not in r.text.replace('"error"', "")
        navigated = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "iframe"}
        assert alice.get("/gradio_api/token", headers=navigated).status_code == 403
        r = alice.get("/gradio_api/token", headers={"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"})
        assert r.status_code == 200 and r.json()["user"] == "alice"


def test_another_site_cannot_sign_the_person_out(servers):
    """/logout is a GET: a link or frame on another site cleared the session cookie."""
    cross = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "iframe"}
    older = {"Referer": f"{EVIL}/page.html"}
    with space_client(servers["oauth"], "alice") as alice:
        for headers in (cross, older, {**cross, "Sec-Fetch-Dest": "document"}):
            r = alice.get("/logout", headers=headers, follow_redirects=False)
            assert r.status_code == 403, (headers, r.status_code)
            assert "set-cookie" not in r.headers, r.headers
        # the app's own sign-out button (a same-origin navigation) still signs out
        r = alice.get("/logout", headers={"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "navigate"},
                      follow_redirects=False)
        assert r.status_code in (302, 303, 307) and "session=" in r.headers.get("set-cookie", "")
    with password_client(servers["password"], "bob") as bob:
        r = bob.get("/logout", headers=cross, follow_redirects=False)
        assert r.status_code == 403 and "set-cookie" not in r.headers
        assert bob.post("/ann/next", json={}).status_code == 200  # still signed in
