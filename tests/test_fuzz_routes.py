"""Property: whatever anyone sends to any route, the server answers 4xx or 2xx, never 5xx, and changes no one else.

Against the real server of a simulated Space (OAuth, so that anonymous calls
reach every handler, as on a real Space). Hypothesis sends arbitrary JSON
(mixed with real tickets, labels and non-finite numbers) and arbitrary bytes
to the page's click routes, arbitrary query strings to the image routes (display and large), and
arbitrary argument lists to every named Gradio endpoint, as a signed-in person
(mallory, not an admin) and as nobody. A crash inside a Gradio endpoint
reaches the caller as an error event, so the server log is checked too: no
traceback may be raised in our code. Meanwhile another person (victim) has
answered records; their progress and, at the end, their stored answers must
be exactly what they were.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from clients import ApiUser, make_images, read_store, write_task
from oauth_cookies import oauth_space_env

CLICK_ROUTES = ("answer", "skip", "back", "next", "saved")
LABELS = ("circle", "square", "triangle", "other")
FUZZ = settings(max_examples=200, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from apphelpers import start_app

    base = tmp_path_factory.mktemp("fuzz")
    make_images(base / "source", 40)
    srv = start_app(base / "data", env={**oauth_space_env(), "SOURCE_DIR": str(base / "source"),
                                        "TASK_FILE": str(write_task(base / "task.toml", overlap=2)),
                                        "ADMINS": "boss"})
    victim = ApiUser.with_oauth(srv.url, "victim")
    view = victim.next()
    for label in ("circle", "square", "triangle"):
        view = victim.submit(view["item"]["record"], [label])
    mallory = ApiUser.with_oauth(srv.url, "mallory")
    first = mallory.click("next")
    tickets = [i["record"] for i in [first.get("item") or {}] + list(first.get("upcoming") or []) if i]
    image_urls = [i["image_url"] for i in [first.get("item") or {}] + list(first.get("upcoming") or []) if i]
    state = {"server": srv, "victim": victim, "mallory": mallory, "nobody": ApiUser.anonymous(srv.url),
             "tickets": tickets or ["1.n0.x"], "image_urls": image_urls, "before": _victim_state(victim),
             "endpoints": mallory.named_endpoints(), "log_start": len(srv.log())}
    yield state
    for key in ("victim", "mallory", "nobody"):
        state[key].close()
    srv.stop()


def _victim_state(victim: ApiUser) -> dict[str, Any]:
    progress = victim.progress()
    return {k: v for k, v in progress.items() if k.startswith("mine")}


ODD_TICKETS = ["\u00b2.n0.x", "\u0663.n0.x", "1.\ud800.x", "1.e0.\u00e9", "-1.n.x", "9" * 40, "1..", ""]


def ticket_values(tickets: list[str]) -> st.SearchStrategy:
    """Real tickets, tickets with a twist, and text that only looks like one (unicode digits and all)."""
    real = st.sampled_from(tickets)
    twisted = st.tuples(real, st.text(max_size=6)).map(lambda t: t[0][:-3] + t[1])
    return st.one_of(real, twisted, st.sampled_from(ODD_TICKETS),
                     st.from_regex(r"\A\w{0,4}\.\w{0,6}\.\w{0,24}\Z"))


def json_values(tickets: list[str]) -> st.SearchStrategy:
    scalars = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
               | ticket_values(tickets) | st.sampled_from(LABELS))
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=8)


def click_bodies(tickets: list[str]) -> st.SearchStrategy:
    values = json_values(tickets)
    shaped = st.fixed_dictionaries({"ticket": ticket_values(tickets) | values}, optional={
        "answer": values | st.lists(st.sampled_from(LABELS), max_size=3), "comment": values,
        "time_spent_ms": values})
    return st.one_of(shaped, shaped, shaped, values)  # mostly the shape of a click, so checks past the first run


def _send_click(app: dict, who: str, route: str, body: Any, raw: bytes | None) -> httpx.Response:
    client = app[who].http
    content = raw if raw is not None else json.dumps(body).encode("utf-8", "surrogatepass")
    return client.post(f"/ann/{route}", content=content, headers={"content-type": "application/json"})


def _check_victim(app: dict) -> None:
    assert _victim_state(app["victim"]) == app["before"], "another person's progress changed"


def test_click_routes_answer_4xx_or_2xx_and_change_no_one_else(app):
    @FUZZ
    @given(who=st.sampled_from(["mallory", "mallory", "nobody"]), route=st.sampled_from(CLICK_ROUTES),
           body=click_bodies(app["tickets"]), raw=st.one_of(st.none(), st.none(), st.none(), st.binary(max_size=200)))
    def prop(who: str, route: str, body: Any, raw: bytes | None) -> None:
        r = _send_click(app, who, route, body, raw)
        assert r.status_code < 500, (who, route, body, raw, r.status_code, r.text[:300])

    for ticket in ODD_TICKETS:  # always tried, whatever the random search finds
        for route in ("answer", "skip", "back"):
            prop = example(who="mallory", route=route, body={"ticket": ticket, "answer": ["circle"]}, raw=None)(prop)
    prop()
    _check_victim(app)


def test_image_route_answers_4xx_or_2xx(app):
    text = st.text(max_size=30) | st.sampled_from(["\u00b2", "9" * 5000, "-1", "1e400", "nan", ""])

    @FUZZ
    @given(who=st.sampled_from(["mallory", "nobody"]), rid=text | st.integers().map(str),
           params=st.dictionaries(st.sampled_from(["u", "e", "s", "x"]), text, max_size=4),
           real=st.sampled_from(app["image_urls"] or ["/img/1"]), tamper=st.booleans(),
           large=st.sampled_from(["", "/large"]))  # the display rendition, or the zoomed view's
    def prop(who: str, rid: str, params: dict[str, str], real: str, tamper: bool, large: str) -> None:
        if tamper:  # a real link with some parameters replaced
            path, _, query = real.partition("?")
            params = {**dict(parse_qsl(query)), **params}
        else:
            path = "/img/" + quote(rid, safe="", errors="surrogatepass")
        r = app[who].http.get(path + large + "?" + urlencode(params, quote_via=quote, errors="surrogatepass"))
        assert r.status_code < 500, (who, rid, params, r.status_code, r.text[:300])

    prop()


def test_named_endpoints_refuse_cleanly_and_change_no_one_else(app):
    names = sorted(app["endpoints"])
    assert {"next", "submit", "skip", "progress", "dashboard", "admin_settings", "admin_release_user"} <= set(names)

    @FUZZ
    @given(who=st.sampled_from(["mallory", "nobody"]), name=st.sampled_from(names),
           data=st.lists(json_values(app["tickets"]), max_size=4), raw=st.one_of(st.none(), st.none(), st.none(),
                                                                                  st.binary(max_size=100)))
    def prop(who: str, name: str, data: list[Any], raw: bytes | None) -> None:
        client = app[who].http
        if raw is not None:
            r = client.post(f"/gradio_api/call/{name}", content=raw, headers={"content-type": "application/json"})
            assert r.status_code < 500, (who, name, raw, r.status_code, r.text[:300])
            return
        body = json.dumps({"data": data}).encode("utf-8", "surrogatepass")
        r = client.post(f"/gradio_api/call/{name}", content=body, headers={"content-type": "application/json"})
        assert r.status_code < 500, (who, name, data, r.status_code, r.text[:300])
        if r.status_code == 200:
            result = client.get(f"/gradio_api/call/{name}/{r.json()['event_id']}")
            assert result.status_code < 500, (who, name, data, result.status_code, result.text[:300])

    prop()
    _check_victim(app)


@pytest.mark.parametrize("spent", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_time_spent_is_refused(app, spent):
    mallory = app["mallory"]
    view = mallory.click("next")
    assert view.get("item"), view
    body = '{"ticket": %s, "answer": ["circle"], "time_spent_ms": %s}' % (json.dumps(view["item"]["record"]), spent)
    r = mallory.http.post("/ann/answer", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, (r.status_code, r.text[:300])


def test_no_traceback_raised_in_our_code(app):
    """An endpoint's crash reaches its caller as a Gradio error event; the log tells."""
    log = app["server"].log()[app["log_start"]:]
    blocks = log.split("Traceback (most recent call last):")[1:]
    ours = []
    for block in blocks:
        files = [line for line in block.splitlines() if line.lstrip().startswith('File "')]
        if files and ("/annotator/" in files[-1] or "app.py" in files[-1]):
            ours.append(block)
    assert not ours, ours[0][-3000:]


def test_the_other_persons_stored_answers_are_unchanged(app):
    victim_before = app["before"]
    _check_victim(app)
    server = app["server"]
    server.stop()
    stored = read_store(server.data_dir)
    mine = stored.by_user("victim")
    assert len(mine) == victim_before["mine_total"] == 3, mine
    assert sorted(r.answer["label"] for r in mine.values()) == ["circle", "square", "triangle"]
