"""Who may do what, against the real server: every refusal is clear and changes nothing.

- every endpoint refuses anonymous callers (password mode: 401 before any handler runs;
  simulated-Space OAuth mode: the handler says "sign in"), and forged or expired OAuth sessions;
- a person can only answer records the server issued to them (forged, tampered, another
  person's ticket) and cannot touch another person's answers;
- image links are signed per person and expire; nothing in DATA_DIR or the image cache can be
  fetched by guessing a path;
- wrong answers (unknown label, wrong type, oversized comment) get a message that says what to do;
- admin-only endpoints (when the app has any) refuse people who are not admins.

Each refusal is checked to leave the answers unchanged twice: live, through the progress
counts, and at the end by reading the DuckDB file of the stopped server, which must hold
exactly the answers the accepted calls made.
"""

from __future__ import annotations

import json
import signal
import time
from urllib.parse import parse_qs, urlencode, urlparse

import duckdb
import pytest

from clients import ApiError, ApiUser, add_users, labels_of, make_images, read_store, start_many, write_task
from oauth_cookies import oauth_space_env

from annotator.tickets import Signer

SECRET_KEY = "security-test-signing-key"
PW_USERS = ["alice", "bob", "carol"]
CLICK_ROUTES = ("answer", "skip", "back", "next", "saved")  # the page's JSON routes (annotator/ui/clicks.py)


def _spec(base, env):
    make_images(base / "source", 12)
    env = {"SOURCE_DIR": str(base / "source"), "TASK_FILE": str(write_task(base / "task.toml", overlap=2)),
           "SECRET_KEY": SECRET_KEY, "MAX_COMMENT_CHARS": "200", "ADMINS": "carol", **env}
    return base / "data", env


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """A password-mode server (alice, bob, carol; carol is the admin) and a simulated-Space OAuth one."""
    pw_base, oauth_base = tmp_path_factory.mktemp("sec-pw"), tmp_path_factory.mktemp("sec-oauth")
    passwords = add_users(pw_base / "data" / "passwords.json", PW_USERS)
    pw_server, oauth_server = start_many(_spec(pw_base, {"AUTH_MODE": "password"}),
                                         _spec(oauth_base, oauth_space_env()))
    pw_server.passwords = passwords
    yield {"password": pw_server, "oauth": oauth_server}
    pw_server.stop()
    oauth_server.stop()


@pytest.fixture(scope="module")
def pw(servers):
    server = servers["password"]
    users = {n: ApiUser.with_password(server.url, n, server.passwords[n]) for n in PW_USERS}
    server.users = users
    server.accepted = {}  # (record id, user) -> (status, answer, comment) of every accepted call
    yield server
    for u in users.values():
        u.close()


@pytest.fixture(scope="module")
def oauth(servers):
    return servers["oauth"]


def answers_state(server) -> dict:
    """What the server counts, through the API: the team's and each person's answers."""
    state = {}
    for name, user in server.users.items():
        p = user.progress()
        state[name] = p["mine_total"]
        state["team"] = (p["team_answers"], p["team_complete"])
    return state


def refused(server, call, *expected: str) -> str:
    """Run `call`, expect an ApiError whose message has every `expected` text; the answers stay as they were."""
    before = answers_state(server)
    with pytest.raises(ApiError) as info:
        call()
    message = info.value.message
    for text in expected:
        assert text.lower() in message.lower(), (text, message)
    assert answers_state(server) == before
    return message


def submit(server, name: str, view: dict, label: str, comment: str = "") -> dict:
    """An accepted answer, remembered for the final comparison with the store."""
    item = view["item"]
    after = server.users[name].submit(item["record"], [label], comment)
    assert after.get("message") is None, after
    server.accepted[(item["record_id"], name)] = ("submitted", (label,), comment)
    return after


# --- anonymous callers ---------------------------------------------------------------

def test_password_mode_refuses_anonymous_callers_on_every_endpoint(pw):
    alice = pw.users["alice"]
    endpoints = alice.named_endpoints()
    assert {"next", "submit", "skip", "progress", "page_load"} <= set(endpoints)
    before = answers_state(pw)
    with ApiUser.anonymous(pw.url) as anon:
        assert anon.http.get("/config").status_code == 401
        for name, spec in endpoints.items():
            data = [None] * spec["inputs"]
            for path in (f"/gradio_api/call/{name}", f"/gradio_api/run/{name}"):
                r = anon.http.post(path, json={"data": data})
                assert r.status_code == 401, (path, r.status_code, r.text[:200])
        # every event of the page, named or not, through the browser's own routes
        for dep in alice.config()["dependencies"]:
            for queued in (True, False):
                r = anon.post_event(dep["id"], queued, [None] * len(dep.get("inputs", [])))
                assert r.status_code == 401, (dep.get("api_name"), queued, r.status_code, r.text[:200])
        # the page's click routes
        ticket = alice.next()["item"]["record"]
        for route in CLICK_ROUTES:
            with pytest.raises(ApiError) as info:
                anon.click(route, ticket=ticket, answer=["circle"])
            assert info.value.status == 401 and "sign in" in info.value.message.lower(), (route, info.value)
        with pytest.raises(ApiError):
            ApiUser.with_password(pw.url, "alice", "not-her-password")
    assert answers_state(pw) == before


def test_oauth_mode_refuses_callers_without_a_valid_session(oauth):
    callers = {
        "no cookie": ApiUser.anonymous(oauth.url),
        "wrong secret": ApiUser.with_oauth(oauth.url, "mallory", secret="not-the-space-secret"),
        "expired session": ApiUser.with_oauth(oauth.url, "eve", ttl=-60),
    }
    with ApiUser.with_oauth(oauth.url, "olga") as olga:
        endpoints = olga.named_endpoints()
        first = olga.next()
        assert first["state"] == "ready"
        ticket = first["item"]["record"]
        baseline = olga.progress()
        try:
            for why, caller in callers.items():
                for name, spec in endpoints.items():
                    data = [None] * spec["inputs"]
                    if name == "submit":
                        data = [ticket, ["circle"], ""]
                    elif name == "skip":
                        data = [ticket]
                    send = caller.call if spec["queue"] else caller.run
                    if name == "_check_login_status":  # Gradio's LoginButton asking "am I signed in?"
                        assert "Sign in" in str(send(name)), why
                        continue
                    if name == "page_load":  # the page itself: shows the sign-in prompt instead of a record
                        out = send(name)
                        assert "signed_out" in out[0] and "sign in" in out[0].lower() and ticket not in out[0], out
                        continue
                    try:
                        out = send(name, *data)
                    except ApiError as exc:
                        assert "sign in" in exc.message.lower(), (why, name, exc.message)
                    else:
                        pytest.fail(f"{why}: /{name} answered {str(out)[:300]}")
                for route in CLICK_ROUTES:
                    with pytest.raises(ApiError) as info:
                        caller.click(route, ticket=ticket, answer=["circle"])
                    assert info.value.status == 401 and "sign in" in info.value.message.lower(), (why, route)
            assert olga.progress() == baseline
            # the real person still has their record and can answer it
            assert olga.next()["item"]["record_id"] == first["item"]["record_id"]
            olga.submit(ticket, ["circle"], "")
        finally:
            for caller in callers.values():
                caller.close()
    assert oauth.stop() in (0, -signal.SIGTERM)
    snap = read_store(oauth.data_dir)
    assert [(r.user_id, r.record_id, labels_of(r.answer)) for r in snap.responses] == \
        [("olga", first["item"]["record_id"], ("circle",))]
    users = {u for (u,) in _users(oauth.data_dir)}
    assert users == {"olga"}, users  # nobody without a valid session was even recorded as seen


def _users(data_dir):
    con = duckdb.connect(str(data_dir / "annotator.duckdb"), read_only=True)
    try:
        return con.execute("SELECT user_id FROM users").fetchall()
    finally:
        con.close()


# --- tickets: only what was issued to you ----------------------------------------------

def test_only_records_issued_to_you_can_be_answered(pw):
    alice, bob = pw.users["alice"], pw.users["bob"]
    a = alice.next()
    b = bob.next()
    a_ticket, a_rid = a["item"]["record"], a["item"]["record_id"]
    b_rid = b["item"]["record_id"]  # with overlap 2 this may be alice's record too: her ticket is still hers
    rid, nonce, mac = a_ticket.split(".")
    other_rid = a_rid + 1

    # another person's ticket, through the API and through the page's buttons
    refused(pw, lambda: bob.submit(a_ticket, ["circle"]), "not issued to you")
    refused(pw, lambda: bob.skip(a_ticket), "not issued to you")
    refused(pw, lambda: bob.click("answer", ticket=a_ticket, answer=["square"]), "not issued to you")
    refused(pw, lambda: bob.click("skip", ticket=a_ticket), "not issued to you")
    refused(pw, lambda: bob.click("back", ticket=a_ticket), "not issued to you")
    # a tampered record id, nonce or signature; a ticket made up from scratch; another server's key
    refused(pw, lambda: alice.submit(f"{other_rid}.{nonce}.{mac}", ["circle"]), "not issued to you")
    flipped = nonce[:-1] + ("1" if nonce.endswith("0") else "0")  # always a different nonce
    refused(pw, lambda: alice.submit(f"{rid}.{flipped}.{mac}", ["circle"]), "not issued to you")
    refused(pw, lambda: alice.submit(f"{rid}.{nonce}.{'0' * len(mac)}", ["circle"]), "not issued to you")
    refused(pw, lambda: alice.submit(f"{other_rid}.000000000000.{'a' * 24}", ["circle"]), "not issued to you")
    forged = Signer(b"some-other-key").issue(other_rid, "alice")
    refused(pw, lambda: alice.submit(forged, ["circle"]), "not issued to you")
    # malformed references
    for bad in (None, "", 7, ["x"], {"record": a_ticket}, "1.2", "x" * 500, f"-{rid}.{nonce}.{mac}"):
        refused(pw, lambda: alice.submit(bad, ["circle"]), "record")

    # after all that, both still have their own record on screen and can answer it
    assert alice.next()["item"]["record_id"] == a_rid
    assert bob.next()["item"]["record_id"] == b_rid
    submit(pw, "alice", a, "square", "alice's first")
    submit(pw, "bob", b, "triangle")
    # a replay of an answered ticket is ignored, not counted twice nor changed
    before = answers_state(pw)
    again = alice.submit(a_ticket, ["other"], "changed by a replay")
    assert "already recorded" in (again["message"] or "")
    assert answers_state(pw) == before


def test_nobody_touches_another_persons_answers(pw):
    alice, bob, carol = pw.users["alice"], pw.users["bob"], pw.users["carol"]
    # carol has answered nothing: going back shows her nothing of anybody else's
    view = carol.click("back", ticket="")
    assert view["item"] is None or not view["item"]["editing"]
    first = carol.next()
    assert first["item"]["answer"] == {} and not first["item"]["editing"]
    # bob going back sees his own answer only, never alice's
    mine = [k for k in pw.accepted if k[1] == "bob"]
    b_view = bob.next()
    out = bob.click("back", ticket=b_view["item"]["record"])
    assert out["item"]["record_id"] == mine[-1][0] and out["item"]["editing"]
    assert "alice" not in json.dumps(out)
    # bob cannot answer (or change) a record of alice's with her old ticket, even one he also holds
    alice_rids = {k[0] for k in pw.accepted if k[1] == "alice"}
    a_next = alice.next()
    refused(pw, lambda: bob.submit(a_next["item"]["record"], ["other"]), "not issued to you")
    assert all(pw.accepted[(rid, "alice")][1] == ("square",) for rid in alice_rids)


# --- image links -----------------------------------------------------------------------

def test_image_links_are_signed_per_person_and_expire(pw):
    alice, bob = pw.users["alice"], pw.users["bob"]
    view = alice.next()
    url = view["item"]["image_url"]
    rid = view["item"]["record_id"]
    ok = alice.get(url)
    assert ok.status_code == 200 and ok.headers["content-type"].startswith("image/")
    assert "no-store" not in ok.headers.get("cache-control", "") and "public" not in ok.headers["cache-control"]
    parsed = urlparse(url)
    q = {k: v[0] for k, v in parse_qs(parsed.query).items()}
    assert q["u"] == "alice"

    def link(**changes):
        return f"{parsed.path}?{urlencode({**q, **changes})}"

    signer = Signer(SECRET_KEY.encode())
    other = next(i for i in range(1, 13) if i != rid)
    bad = {
        "someone else's name in u": link(u="bob"),
        "no signature": f"{parsed.path}?u=alice&e={q['e']}",
        "forged signature": link(s="0" * len(q["s"])),
        "extended expiry": link(e=str(int(q["e"]) + 3600)),
        "another record": f"/img/{other}?{parsed.query}",
        "expired": signer.image_url(rid, "alice", ttl=60, now=time.time() - 3600),
        "expired, other user": signer.image_url(rid, "bob", ttl=60, now=time.time() - 3600),
        "not a number": link(e="tomorrow"),
    }
    for why, bad_url in bad.items():
        for client in (alice, bob):
            r = client.get(bad_url)
            assert r.status_code == 403, (why, bad_url, r.status_code)
            assert not r.headers.get("content-type", "").startswith("image/")
    # a correctly signed, unexpired link is the key itself (like a signed S3 link): bob's own works for bob
    assert bob.get(signer.image_url(rid, "bob", ttl=60)).status_code == 200


def test_no_file_of_data_dir_or_cache_by_guessing_a_path(pw):
    alice = pw.users["alice"]
    assert alice.get(alice.next()["item"]["image_url"]).status_code == 200  # a rendition in the cache, whatever ran
    data, cache = pw.data_dir, pw.data_dir.parent / "cache"
    images = sorted((data / "images").rglob("*.*"))
    cached = sorted(cache.rglob("*.png"))
    assert images and cached
    targets = [data / "annotator.duckdb", data / ".secret_key", data / "passwords.json", images[0], cached[0],
               pw.data_dir.parent / "source" / "circle" / "circle_000.png"]
    for target in targets:
        for path in (f"/gradio_api/file={target}", f"/file={target}", f"/gradio_api/file={target.name}",
                     f"/img/{target.name}", f"/img/../{target.name}", f"/img/1/../../{target.name}"):
            r = alice.get(path)
            assert r.status_code in (400, 403, 404, 405, 422), (path, r.status_code)
            assert b"SQLite" not in r.content and b"DUCK" not in r.content
            assert SECRET_KEY.encode() not in r.content and b"pbkdf2" not in r.content
            assert not r.headers.get("content-type", "").startswith("image/"), path


# --- answers that do not fit the task -----------------------------------------------

def test_wrong_answers_get_a_clear_message_and_change_nothing(pw):
    carol = pw.users["carol"]
    view = carol.next()
    ticket = view["item"]["record"]
    cases = [
        (["dog"], "", ["'dog' is not a label", "circle, square, triangle, other"]),
        ("dog", "", ["not a label"]),
        ([], "", ["choose a label"]),
        (["circle", "square"], "", ["exactly one label"]),
        (5, "", ["label name"]),
        ({"colour": "circle"}, "", ["'colour' is not a question"]),  # an object names questions (issue 15)
        ([["circle"]], "", ["label name"]),
        ([None], "", ["label name"]),
        (["circle"], "x" * 201, ["too long", "200"]),
        (["circle"], 12, ["comment must be text"]),
        (["circle"], ["a"], ["comment must be text"]),
    ]
    for answer, comment, expected in cases:
        refused(pw, lambda: carol.submit(ticket, answer, comment), *expected)
    # the page's click route checks the same way
    for answer, comment, expected in cases:
        refused(pw, lambda: carol.click("answer", ticket=ticket, answer=answer, comment=comment), *expected)
    # after every refusal the record is still carol's to answer, with a comment at the limit
    assert carol.next()["item"]["record_id"] == view["item"]["record_id"]
    submit(pw, "carol", view, "circle", "z" * 200)


def test_admin_endpoints_refuse_people_who_are_not_admins(pw):
    """The brief's admin-only actions: checked on whatever admin endpoints the app exposes."""
    alice = pw.users["alice"]
    admin = {n: s for n, s in alice.named_endpoints().items() if n.startswith("admin")}
    if not admin:
        pytest.skip("the app has no admin-only endpoint yet")
    args = {"admin_release_user": ["bob"], "admin_reopen": [1, 1]}
    for name, spec in admin.items():
        data = args.get(name, [None] * spec["inputs"])
        send = alice.call if spec["queue"] else alice.run
        refused(pw, lambda: send(name, *data), "admin")


# --- last: the DuckDB file holds exactly the accepted answers --------------------------

def test_store_holds_exactly_the_accepted_answers(pw):
    if not pw.accepted:
        pytest.skip("run the whole module: the tests above make the answers")
    assert pw.stop() in (0, -signal.SIGTERM)
    snap = read_store(pw.data_dir)
    stored = {(r.record_id, r.user_id): (r.status, labels_of(r.answer), r.comment or "") for r in snap.responses}
    assert stored == pw.accepted
    assert snap.history == {}
    assert {u for (u,) in _users(pw.data_dir)} <= set(PW_USERS)
