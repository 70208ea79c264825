"""Hostile callers on the newest surfaces, against a real server: the image lane and routes, the review section,
the final-answer and nickname actions.

Each case gets a clear 4xx or Gradio error message (or the normal answer), changes nothing, and leaves no
traceback in the log; the other people go on. What tests/test_hostile_input.py, test_fuzz_routes.py,
test_image_links.py and test_edge_*.py already cover is not repeated.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from clients import ApiError, ApiUser
from dashhelpers import sign_in, start_password_app

EVIL = "https://evil.example"


@pytest.fixture(scope="module")
def app(tmp_path_factory: Any) -> Iterator[dict[str, Any]]:
    """A password-mode server (admin, ann, bob; LEADERBOARD=on) where ann and bob disagree on one record."""
    base: Path = tmp_path_factory.mktemp("hostile-new")
    server = start_password_app(base, images=6, env={"LEADERBOARD": "on"})
    users = {name: sign_in(server, name) for name in ("admin", "ann", "bob")}
    first = users["ann"].next()["item"]
    users["ann"].submit(first["record"], ["circle"])
    view = users["bob"].next()
    assert view["item"]["record_id"] == first["record_id"]
    users["bob"].submit(view["item"]["record"], ["square"])
    shown = users["ann"].click("next")["item"]  # a record on ann's screen, its image link signed for ann
    yield {"server": server, "rid": first["record_id"], "shown": shown, **users,
           "anon": ApiUser.anonymous(server.url), "log_start": len(server.log())}
    for user in users.values():
        user.close()
    server.stop()


# --- images -------------------------------------------------------------------------------------------


def test_image_addresses_answer_head_and_refuse_other_methods_with_405(app: dict[str, Any]) -> None:
    """HEAD gets GET's headers without the body (it fell through to Gradio's mount: 404 for a valid link);
    POST, PUT, DELETE, OPTIONS get 405 naming GET and HEAD, refused links 403 as on GET."""
    http = app["anon"].http
    url = app["shown"]["image_url"]
    path, query = url.split("?")
    for link in (url, f"{path}/large?{query}"):
        got, head = http.get(link), http.head(link)
        assert got.status_code == head.status_code == 200, (link, head.status_code, head.text)
        assert head.content == b"" and head.headers["content-length"] == str(len(got.content))
        assert head.headers["cache-control"] == got.headers["cache-control"]
        assert head.headers["content-type"] == got.headers["content-type"]
    assert http.head(url.replace("s=", "s=0")).status_code == 403
    for method in ("POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        for link in (url, f"{path}/large?{query}", f"{path}/2?{query}"):
            r = http.request(method, link)
            assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD", (method, link, r.status_code)
            assert "GET or HEAD" in r.json()["detail"]
    # the 405 route, as every route: another site is refused before it, and an oversized body changes nothing
    assert http.post(url, content=b"{}", headers={"Origin": EVIL}).status_code == 403
    assert http.post(url, content=b"x" * (4 * 2**20)).status_code in (405, 413)
    assert http.get(url).status_code == 200


def test_odd_image_addresses_are_refused_or_served_never_failing(app: dict[str, Any]) -> None:
    """Encoded and doubled paths, repeated or huge parameters, NUL and non-ASCII, another person's or another
    image's signature, a signature of the wrong length, an expired link, ids past int32/int64 and image
    numbers past the record's count: the link's image, or a 4xx with a message."""
    http = app["anon"].http
    url = app["shown"]["image_url"]
    rid = app["shown"]["record_id"]
    path, query = url.split("?")
    params = dict(p.split("=", 1) for p in query.split("&"))
    sig, exp = params["s"], params["e"]
    good = {url, path.replace("/img/", "/%69mg/") + "?" + query, f"{path}?s=0&{query}",  # the last s counts
            f"{url}&x={'a' * 60_000}", f"{path}?{'&'.join(f'k{i}=v' for i in range(3000))}&{query}"}
    bad = [f"{path}/?{query}", "/" + url, path.replace("/img/", "/img//") + "?" + query, url.replace("/img/", "/IMG/"),
           f"{path}?{query}&s=0", url + "%00", url.replace("u=ann", "u=ann%00"), url.replace("u=ann", "u=%FF%FE"),
           url.replace("u=ann", "u=bob"), url.replace("u=ann", "u=%C3%A9"), url.replace(sig, sig + "ab"),
           url.replace(sig, sig[:10]), url.replace(sig, "é" * 24), url.replace(f"e={exp}", "e=1"),
           url.replace(f"e={exp}", "e=" + "9" * 19), url.replace(f"e={exp}", "e=٣"), f"{path}/2?{query}",
           f"{path}/9?{query}", f"{path}/10?{query}", f"{path}/02?{query}", f"{path}/large/2?{query}",
           f"/img/{rid + 2**31}?{query}", f"/img/{rid + 2**63}?{query}", f"/img/{'9' * 4400}?{query}",
           f"/img/-{rid}?{query}", f"/img/%EF%BC%94?{query}",
           f"{path}?{'&'.join(f'k{i}=v' for i in range(3000))}&x={query}"]
    for link in good:
        r = http.get(link)
        assert r.status_code == 200 and r.headers["content-type"].startswith("image/"), (link, r.status_code)
    for link in bad:
        r = http.get(link)
        assert 400 <= r.status_code < 500 and r.json(), (link[:120], r.status_code, r.text[:200])


# --- the review section and the final answer ---------------------------------------------------------------


def _event(app: dict[str, Any], who: str, elem_id: str, trigger: str) -> tuple[int, list[dict[str, Any]]]:
    """The page's event on `elem_id`'s `trigger`: its index and its input components (from /config)."""
    config = app[who].config()
    components = {c["id"]: c for c in config["components"]}
    target = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == elem_id)
    for i, dep in enumerate(config["dependencies"]):
        if any(t[0] == target and t[1] == trigger for t in dep["targets"]):
            return i, [components[c] for c in dep["inputs"]]
    raise AssertionError(f"no {trigger} event on {elem_id}")


def _join(app: dict[str, Any], who: str, fn: int, data: list[Any], event_data: Any, session: str) -> dict[str, Any]:
    """Send one event as the browser does, in session `session`; its process_completed message."""
    http = app[who].http
    r = http.post("/gradio_api/queue/join", json={"data": data, "fn_index": fn, "session_hash": session,
                                                  "event_data": event_data})
    assert r.status_code == 200, r.text
    stream = http.get(f"/gradio_api/queue/data?session_hash={session}", timeout=60)
    done = [json.loads(line[5:]) for line in stream.text.splitlines() if line.startswith("data:")]
    done = [m for m in done if m.get("msg") == "process_completed"]
    assert done, stream.text[:500]
    return done[-1]


ODD_CLICKS = [None, {}, {"index": None}, {"index": "ab"}, {"index": 5}, {"index": [None], "value": 1},
              {"index": ["x", 1], "value": 1}, {"index": [10**30, 0], "value": 1}, {"index": [-1, 0], "value": 1},
              {"index": [{"a": 1}], "value": 1}, {"index": [0.5]}, {"index": [True, 0], "value": 1}, [1, 2], "x"]


@pytest.mark.parametrize("who", ["ann", "admin"])
def test_a_made_up_click_on_the_review_list_gets_a_message_and_no_traceback(app: dict[str, Any], who: str) -> None:
    """The list's click reads its raw event data: gr.SelectData's constructor raised on data without its keys
    and our index check on a row that is no number (tracebacks, an error with a reference)."""
    load, _ = _event(app, "admin", "review-load", "click")
    select, _ = _event(app, "admin", "review-list", "select")
    session = f"odd-clicks-{who}"
    if who == "admin":  # a list is loaded, so every row index is checked against it
        assert "lowest agreement first" in json.dumps(_join(app, who, load, ["", ""], None, session))
    before = len(app["server"].log())
    for data in ODD_CLICKS:
        done = _join(app, who, select, [None], data, session)
        text = json.dumps(done)
        assert done["success"] and "reference" not in text, (data, text[:300])
        assert "Show the list again" in text or "not an admin" in text, (data, text[:300])
    assert "Traceback" not in app["server"].log()[before:]
    if who == "admin":  # the real click still opens the row
        done = _join(app, who, select, [None], {"index": [0, 0], "value": app["rid"], "row_value": []}, session)
        assert f"review-record-{app['rid']}" in json.dumps(done)


def test_save_marks_the_list_kept_in_the_session_whatever_the_client_sends(app: dict[str, Any]) -> None:
    """Save and take back take no table from the client: a made-up one (no "record" column, not a table) made
    the save fail after the final answer was written, or failed in Gradio's parsing. Every input the page's
    save declares gets what a caller likes; the final answer is set once, the list marks it."""
    admin, rid = app["admin"], app["rid"]
    load, _ = _event(app, "admin", "review-load", "click")
    save, inputs = _event(app, "admin", "review-save", "click")
    clear, clear_inputs = _event(app, "admin", "review-clear", "click")
    session = "save-made-up"
    _join(app, "admin", load, ["", ""], None, session)
    made_up = {"Dataframe": {"headers": ["x"], "data": [[1]], "metadata": None}, "State": None,
               "Textbox": str(rid), "Radio": "circle"}
    before = len(app["server"].log())
    try:
        done = _join(app, "admin", save, [made_up[c["type"].title()] if c["type"].title() in made_up else None
                                          for c in inputs], None, session)
        text = json.dumps(done)
        assert done["success"] and f"Record {rid} now has the final answer" in text, text[:400]
        table = done["output"]["data"][0]
        assert table["data"][0][0] == rid and table["data"][0][3] == "yes", table
        assert [r["record_id"] for r in admin.call("admin_review", "", "")[0]["records"] if r["final"]] == [rid]
        # a non-admin's save changes nothing
        ann_done = _join(app, "ann", save, [made_up.get(c["type"].title()) for c in inputs], None, "save-ann")
        assert "not an admin" in json.dumps(ann_done)
        done = _join(app, "admin", clear, [made_up.get(c["type"].title()) for c in clear_inputs], None, session)
        text = json.dumps(done)
        assert done["success"] and "taken back" in text and done["output"]["data"][0]["data"][0][3] == "", text[:400]
    finally:
        try:
            admin.call("admin_clear_final", rid)
        except ApiError:
            pass
    assert "Traceback" not in app["server"].log()[before:]
    assert not [r for r in admin.call("admin_review", "", "")[0]["records"] if r["final"]]


def test_final_answer_and_review_api_refuse_bad_values_with_a_message(app: dict[str, Any]) -> None:
    """JSON text nested past Python's limit was an unexpected error (a traceback and a reference); a filter
    that is not text was read as "any" and listed every record."""
    admin, rid = app["admin"], app["rid"]
    before = len(app["server"].log())
    for answer, message in (("[" * 5000, "nested too deeply"), ('{"label": ' * 3000, "nested too deeply"),
                            ('{"label": "<script>alert(1)</script>"}', "is not a label of this task"),
                            ("x" * 100_000, "is not a label of this task"), ("\x00", "NUL")):
        with pytest.raises(ApiError, match=message) as refused:
            admin.call("admin_set_final", rid, answer)
        assert "reference" not in refused.value.message
    for label, annotator in ((5, ""), (["circle"], ""), ("", {"a": 1}), ("", 7)):
        with pytest.raises(ApiError, match="to filter by must be text"):
            admin.call("admin_review", label, annotator)
    assert admin.call("admin_review", None, None)[0]["records"]  # None is "any", as the page's empty box
    for record_id in (2**31 + rid, 2**63, -rid, "1e3", [rid], True, None):
        with pytest.raises(ApiError, match="no record|whole number"):
            admin.call("admin_set_final", record_id, '{"label": "circle"}')
    assert not [r for r in admin.call("admin_review", "", "")[0]["records"] if r["final"]]
    assert "Traceback" not in app["server"].log()[before:]


def test_other_sites_cannot_set_a_final_answer_or_a_nickname(app: dict[str, Any]) -> None:
    """The new state-changing endpoints behind the edge's cross-site rule, with the admin's own cookies."""
    rid = app["rid"]
    for headers in ({"Origin": EVIL}, {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
                    {"Referer": EVIL + "/page"}):
        for who, name, data in (("admin", "admin_set_final", [rid, '{"label": "circle"}']),
                                ("admin", "admin_clear_nickname", ["ann"]), ("ann", "nickname", ["Evil"])):
            r = app[who].http.post(f"/gradio_api/call/{name}", json={"data": data}, headers=headers)
            assert r.status_code == 403 and "another site" in r.json()["error"], (headers, name, r.text[:200])
    assert not [r for r in app["admin"].call("admin_review", "", "")[0]["records"] if r["final"]]
    assert "Evil" not in app["ann"].call("nickname", "")[0]


def test_nickname_refuses_odd_values_and_html_stays_text(app: dict[str, Any]) -> None:
    """Wrong types, a lone surrogate, control and invisible characters get a message; a nickname with markup
    is stored as text and shown escaped on the dashboard and as JSON text on the projector."""
    ann = app["ann"]
    for value, message in ((None, "as text"), (5, "as text"), (["a"], "as text"), ({"a": 1}, "as text"),
                           ("\u202eevil", "invisible or control"), ("a\u200bb", "invisible or control"),
                           ("x" * 25, "at most 24")):
        with pytest.raises(ApiError, match=message):
            ann.call("nickname", value)
    body = b'{"data": ["a\\ud800b"]}'  # a lone surrogate, as JSON allows
    r = ann.http.post("/gradio_api/call/nickname", content=body, headers={"content-type": "application/json"})
    assert r.status_code < 500
    if r.status_code == 200:
        result = ann.http.get(f"/gradio_api/call/nickname/{r.json()['event_id']}")
        assert "event: error" in result.text and "reference" not in result.text, result.text[:300]
    assert "shows you as" in ann.call("nickname", "<b>x</b>")[0]
    data = ann.http.get("/projector/data").json()
    assert "<b>x</b>" in json.dumps(data) and "&lt;b&gt;" not in json.dumps(data)  # text: the page sets textContent
    ann.call("nickname", "")


@pytest.mark.parametrize("who", ["ann", "admin"])
def test_a_value_outside_a_choice_list_is_refused_without_a_traceback(app: dict[str, Any], who: str) -> None:
    """Gradio refuses a label filter that is none of the Dropdown's choices before any handler runs, and
    printed a traceback for each: any signed-in caller could fill the log (gradio_glue.quiet_choice_refusals)."""
    load, _ = _event(app, "admin", "review-load", "click")
    before = len(app["server"].log())
    for value in ("zzz", 12, ["a"], {"x": 1}):
        done = _join(app, who, load, [value, ""], None, f"odd-choice-{who}")
        assert not done["success"] and "not in the list of choices" in json.dumps(done), done
    assert "Traceback" not in app["server"].log()[before:]


def test_no_traceback_from_these_cases_and_the_others_go_on(app: dict[str, Any]) -> None:
    """Nothing above left a traceback raised in the app's code or in Gradio's event-data parsing, and bob (who
    sent nothing odd) still annotates."""
    log = app["server"].log()[app["log_start"]:]
    for block in log.split("Traceback (most recent call last):")[1:]:
        files = [line for line in block.splitlines() if line.lstrip().startswith('File "')]
        assert not any("/annotator/" in f or "gradio/events.py" in f for f in files), block[-2000:]
    view = app["bob"].next()
    assert view["state"] in ("ready", "waiting", "done"), view
    if view["state"] == "ready":
        app["bob"].submit(view["item"]["record"], ["circle"])
    with httpx.Client(base_url=app["server"].url) as fresh:
        assert fresh.get(app["shown"]["image_url"]).status_code == 200
