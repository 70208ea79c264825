"""A task of several questions through the scripting API and the page's click routes, against the real app
(examples/questions/task.toml, a simulated Space): `next` describes the questions a script must answer,
`submit` takes the answer object, and every answer that does not fit is a 400 (or the API's error) with
a message naming the question, with nothing stored for it.
"""

from __future__ import annotations

import pytest

from apphelpers import ROOT, start_app
from clients import ApiError, ApiUser, make_images, read_store
from oauth_cookies import oauth_space_env

TASK = ROOT / "examples" / "questions" / "task.toml"
SHAPE = [{"name": "circle", "key": "1"}, {"name": "square", "key": "2"}, {"name": "triangle", "key": "3"},
         {"name": "other", "key": "4"}]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    base = tmp_path_factory.mktemp("questions-api")
    make_images(base / "source", 6)
    server = start_app(base / "data", env={"SOURCE_DIR": str(base / "source"), "TASK_FILE": str(TASK),
                                           **oauth_space_env()})
    yield server
    server.stop()


def test_next_describes_the_questions_and_submit_takes_the_answer_object(app):
    with ApiUser.with_oauth(app.url, "alice") as alice, ApiUser.with_oauth(app.url, "bob") as bob:
        view = alice.next()
        assert view["questions"] == [
            {"name": "shape", "title": "Which shape?", "kind": "label", "required": True, "labels": SHAPE},
            {"name": "issues", "title": "What else is in it?", "kind": "labels", "required": False,
             "labels": [{"name": "noise", "key": "n"}, {"name": "cut off", "key": "o"}, {"name": "small", "key": "m"}]},
            {"name": "clarity", "title": "How clear is the shape?", "kind": "rating", "required": True, "min": 1,
             "max": 5, "min_word": "barely", "max_word": "obvious", "keys": {str(v): str(v) for v in range(1, 6)}},
            {"name": "caption", "title": "Caption", "kind": "text", "required": False, "min_chars": 3,
             "max_chars": 200, "key": "t"}]
        item = view["item"]
        assert item["answer"] == {} and item["suggestion"] == {"shape": item["metadata"]["label"]}

        # forged answers, by the API and by the page's route: refused with the question named
        for bad, words in (({"shape": "circle"}, "'How clear is the shape?' (clarity) needs an answer"),
                           ({"shape": "circle", "clarity": 9}, "9 is off the scale"),
                           ({"shape": "circle", "clarity": "5"}, "whole number from 1 to 5, not text"),
                           ({"shape": "hexagon", "clarity": 5}, "'hexagon' is not a label of 'Which shape?'"),
                           ({"shape": "circle", "clarity": 5, "mood": "x"}, "'mood' is not a question"),
                           ({"shape": "circle", "clarity": 5, "caption": "ab"}, "too short"),
                           ({"shape": "circle", "clarity": 5, "caption": "x" * 201}, "too long"),
                           (["circle"], "an object with a value per question")):
            with pytest.raises(ApiError) as by_api:
                alice.submit(item["record"], bad)
            assert words in by_api.value.message, (bad, by_api.value.message)
            with pytest.raises(ApiError) as by_page:
                alice.click("answer", ticket=item["record"], answer=bad)
            assert by_page.value.status == 400 and words in by_page.value.message, (bad, by_page.value.message)

        answer = {"shape": "triangle", "issues": ["cut off"], "clarity": 3, "caption": "a cut-off triangle"}
        after = alice.submit(item["record"], answer, "")
        assert after["state"] == "ready" and "questions" not in after  # only `next` carries them
        back = alice.click("back", ticket=after["item"]["record"])
        assert back["item"]["record_id"] == item["record_id"] and back["item"]["answer"] == answer
        # the page's route takes the object too; an optional question may be left out
        other = bob.click("next")["item"]
        bob.click("answer", ticket=other["record"], answer={"shape": "circle", "clarity": 5})
    app.stop()
    stored = {(r.record_id, r.user_id): r.answer for r in read_store(app.data_dir).responses}
    assert stored == {(item["record_id"], "alice"): answer, (other["record_id"], "bob"): {"shape": "circle", "clarity": 5}}
