"""The projector's routes on the real app (password mode): who may read them, from where, and what they show.

- `/projector` is a page with no data: anyone may open it, also by a link from another site;
- `/projector/data` answers only a signed-in person, from the app's own pages or a script, never another
  site's page (refused at the edge, like every route with a person's data);
- the leaderboard is off by default; on, it names people by nickname or number, never by user name;
- a person's progress carries their share of the goal.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from clients import ApiError
from dashhelpers import annotate, sign_in, start_password_app


def test_routes_refuse_anonymous_and_cross_site_and_the_leaderboard_is_off(tmp_path: Path) -> None:
    server = start_password_app(tmp_path)
    try:
        with httpx.Client(base_url=server.url) as anon:
            page = anon.get("/projector")
            assert page.status_code == 200 and 'id="proj"' in page.text and "/ann-static/projector." in page.text
            assert page.headers["cache-control"] == "no-store"
            linked = anon.get("/projector", headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"})
            assert linked.status_code == 200  # a link from a chat or a slide opens it
            refused = anon.get("/projector/data")
            assert refused.status_code == 401 and "sign in" in refused.json()["error"].lower()
        with sign_in(server, "ann") as ann:
            annotate(ann, 4, seed=1)
            data = ann.get("/projector/data")
            assert data.status_code == 200, data.text
            body = data.json()
            assert body["leaderboard"] is None
            assert body["goal"]["text"] == "all 12 records complete" and body["title"]
            assert body["goal"]["unit"] == "records" and body["refresh_seconds"] == 10
            assert sum(n for _, _, n in body["labels"]) == 4
            for headers in ({"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors"},
                            {"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "cors"},
                            {"Origin": "https://evil.test"}, {"Referer": "https://evil.test/page"}):
                refused = ann.http.get("/projector/data", headers=headers)
                assert refused.status_code == 403, (headers, refused.text)
            same = ann.http.get("/projector/data", headers={"Sec-Fetch-Site": "same-origin"})
            assert same.status_code == 200
            # 24 records of the whole task's 24 answers: 4 answers are 16.7 %
            assert ann.progress()["goal_share"] == pytest.approx(16.7)
            with pytest.raises(ApiError, match="LEADERBOARD=off"):
                ann.call("nickname", "Owl")
    finally:
        server.stop()


def test_leaderboard_on_shows_nicknames_or_numbers_and_the_goal_share(tmp_path: Path) -> None:
    server = start_password_app(tmp_path, env={"LEADERBOARD": "on", "GOAL": "10 answers"})
    try:
        with sign_in(server, "ann") as ann, sign_in(server, "bob") as bob:
            annotate(ann, 6, seed=1)
            annotate(bob, 6, seed=2)
            assert "Owl" in bob.call("nickname", "Owl")[0]
            with pytest.raises(ApiError, match="someone else's"):
                ann.call("nickname", "owl")
            assert ann.progress()["goal_share"] == 60.0
            body = bob.get("/projector/data").json()
            board = body["leaderboard"]
            names = [row["name"] for row in board["rows"]]
            assert "Owl" in names and any(n.startswith("Annotator ") for n in names)
            assert "ann" not in names and "bob" not in names and "ranked by answers" in board["how"].lower()
            assert all(row["agreement"] is not None for row in board["rows"])
            assert body["goal"]["target"] == 10 and body["goal"]["done"] == 12 and body["goal"]["reached"]
    finally:
        server.stop()

