"""A page on another site cannot act as the signed-in person, in a real browser (issue 12.1, 20.3, 20.4).

Debian's Chromium with third-party cookies allowed (the setting under which
the attacks worked) visits the app at https://space.test (a simulated Space:
TLS in front of the real server, so its SameSite=None; Secure cookies are
sent cross-site as on a real Space), then a page on http://evil.test that
tries to read the person's next record and answer it, run a named endpoint,
read the password session's token, and sign the person out. Each is refused,
and the app itself keeps working. (The app inside another site's frame is
the subject of the partitioned-cookie tests, annotator/ui/cookies.py.)
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from browserhelpers import check_browser, chromium_profile
from clients import add_users, make_images, start_many, write_task
from edgehelpers import my_progress, space_client
from fakeprovider import SPACE_HOST, TlsFronts, hold_port, make_certificate, port_of
from oauth_cookies import forge_session_cookie, oauth_space_env

WAIT = 20_000  # ms
EVIL_PAGE = b"<html><body><h1>a page on another site</h1></body></html>"


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    """Both auth modes behind TLS at space.test:<port>; {mode: (url, server)}."""
    check_browser(require=True)  # this module fails, never skips, without a browser
    base = tmp_path_factory.mktemp("edge-browser")
    cert, key = make_certificate(base)  # for space.test (and hf.test, 127.0.0.1)
    fronts = {mode: hold_port() for mode in ("oauth", "password")}  # held: nobody takes them while the apps start
    specs = []
    for mode, held in fronts.items():
        port = port_of(held)
        make_images(base / mode / "source", 20)
        env = {"SOURCE_DIR": str(base / mode / "source"), "TASK_FILE": str(write_task(base / mode / "task.toml")),
               "SECRET_KEY": "edge-browser-key", "ADMINS": "carol",
               "GRADIO_ROOT_PATH": f"https://{SPACE_HOST}:{port}"}  # the public URL, as behind a Space's proxy
        if mode == "password":
            env["AUTH_MODE"] = "password"
            add_users(base / mode / "data" / "passwords.json", ["alice", "bob", "carol"])
        else:
            env.update(oauth_space_env())
        specs.append((base / mode / "data", env))
    servers = dict(zip(fronts, start_many(*specs)))
    tls = TlsFronts(cert, key)
    for m in fronts:
        tls.add(fronts[m], int(servers[m].url.rsplit(":", 1)[1]))
    yield {m: (f"https://{SPACE_HOST}:{port_of(fronts[m])}", servers[m]) for m in fronts}
    tls.close()
    for server in servers.values():
        server.stop()


class EvilSite:
    """Another site: a page at http://evil.test:<port> (loopback, so the browser treats it as local, as
    it does the simulated Space; a page Playwright made up would count as public, and Chromium keeps
    public pages from reaching local addresses at all, which would prove nothing here)."""

    def __init__(self) -> None:
        class Page(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(EVIL_PAGE)))
                self.end_headers()
                self.wfile.write(EVIL_PAGE)

            def log_message(self, *_args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
        self.url = f"http://evil.test:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture(scope="module")
def evil():
    site = EvilSite()
    yield site.url
    site.close()


@pytest.fixture(scope="module")
def context(tmp_path_factory):
    """A Chromium profile that allows third-party cookies, where the attacks worked."""
    profile = tmp_path_factory.mktemp("edge-profile")
    (profile / "Default").mkdir()
    (profile / "Default" / "Preferences").write_text(json.dumps({"profile": {"cookie_controls_mode": 0}}))
    with chromium_profile(profile, ["--ignore-certificate-errors",
                                    f"--host-resolver-rules=MAP {SPACE_HOST} 127.0.0.1, MAP evil.test 127.0.0.1"],
                          require=True, ignore_https_errors=True) as ctx:
        yield ctx


ATTACK = """async (S) => {
  const out = {};
  const read = async (name, call) => {
    try { const r = await call(); out[name] = r.status + ' ' + (await r.text()).slice(0, 300); }
    catch (e) { out[name] = 'ERR ' + e.message; }
  };
  const json = (body) => ({method: 'POST', credentials: 'include', headers: {'content-type': 'application/json'},
                           body: JSON.stringify(body)});
  await read('next', () => fetch(S + '/ann/next', json({})));
  const m = /"record":"([^"]+)"/.exec(out.next || '');
  if (m) await read('answer', () => fetch(S + '/ann/answer', json({ticket: m[1], answer: ['circle']})));
  await read('answer_no_cors', () => fetch(S + '/ann/answer', {method: 'POST', mode: 'no-cors', credentials: 'include',
      headers: {'content-type': 'text/plain'}, body: '{"ticket": "x", "answer": ["circle"]}'}));
  await read('endpoint', () => fetch(S + '/gradio_api/call/admin_settings', json({data: []})));
  await read('token', () => fetch(S + '/gradio_api/token', {credentials: 'include'}));
  return out;
}"""


def _session_cookie(ctx, url: str):
    return [c for c in ctx.cookies(url) if c["name"] == "session"]


def test_a_page_on_another_site_cannot_read_answer_or_sign_out_in_hf_mode(space, context, evil):
    from playwright.sync_api import expect

    url, server = space["oauth"]
    context.add_cookies([{"name": "session", "value": forge_session_cookie("alice"), "domain": SPACE_HOST,
                          "path": "/", "httpOnly": True, "secure": True, "sameSite": "None"}])
    page = context.new_page()
    page.goto(url + "/")  # the app works through the edge, event streams included
    expect(page.get_by_role("button", name="Logout (alice)")).to_be_visible(timeout=WAIT)
    expect(page.locator("#ann-img")).to_be_visible(timeout=WAIT)
    with space_client(server, "alice") as alice:
        before = my_progress(alice)
    cookie = _session_cookie(context, url)
    assert cookie, "the signed-in session cookie is missing"

    evil_page = context.new_page()
    evil_page.goto(f"{evil}/")
    out = evil_page.evaluate(ATTACK, url)
    for name in ("next", "endpoint", "token"):
        assert not out[name].startswith("200"), (name, out[name])
    assert "answer" not in out, out  # no ticket was read, so none could be answered
    assert out["answer_no_cors"].startswith("0"), out  # a control: the other site's page does reach the server
    # the page framed by the other site is still the app, signed in (a navigation is allowed)
    evil_page.evaluate("(u) => { const f = document.createElement('iframe'); f.src = u + '/'; f.width = 900;"
                       " f.height = 700; document.body.appendChild(f); }", url)
    expect(evil_page.frame_locator("iframe").locator("#ann-img")).to_be_visible(timeout=WAIT)
    # sign-out by another site: a link the person follows (a top-level navigation)
    evil_page.evaluate("(u) => { const a = document.createElement('a'); a.href = u + '/logout'; a.id = 'out';"
                  " a.textContent = 'win a prize'; document.body.appendChild(a); }", url)
    with evil_page.expect_navigation():
        evil_page.click("#out")
    assert _session_cookie(context, url) == cookie, "another site's link changed the session cookie"
    with space_client(server, "alice") as alice:
        assert my_progress(alice) == before, "another site's page changed alice's answers"
    page.reload()
    expect(page.get_by_role("button", name="Logout (alice)")).to_be_visible(timeout=WAIT)
    evil_page.close()
    page.close()


def test_a_page_on_another_site_cannot_read_the_password_token(space, context, evil):
    from playwright.sync_api import expect

    url, _ = space["password"]
    page = context.new_page()
    page.goto(url + "/")
    page.get_by_label("username").fill("bob")
    page.get_by_label("password").fill("pw-bob-secret")
    page.get_by_role("button", name="Login").click()
    expect(page.locator("#ann-img")).to_be_visible(timeout=WAIT)
    own = page.evaluate("async () => (await fetch('/gradio_api/token')).json()")
    assert own["user"] == "bob" and own["token"], own  # the app's own page still reads it

    evil_page = context.new_page()
    evil_page.goto(f"{evil}/")
    out = evil_page.evaluate(ATTACK, url)
    assert own["token"] not in json.dumps(out), out
    for name in ("next", "endpoint", "token"):
        assert not out[name].startswith("200"), (name, out[name])
    evil_page.close()
    page.close()
