"""What an answer to a task is: checked against the task's questions, and a record's suggested one.

An answer is one value per question, by question name (`model.Answer`): a
label's name, a list of label names, a whole number on a rating's scale, a
text, or a list of labelled boxes in the image's original pixels. The service
checks every answer here before anything is queued, so a value that the
export, the agreement or a store could not take never gets in; the message
speaks to whoever sent it (an annotator's page, or a script's author), naming
the question. Pure: no I/O, no Gradio.

A task of one question also takes today's forms, a label's name or a list of
names, since the page and every script sent those before a task could have
several questions.
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping

from annotator.boxes import clamp_bbox
from annotator.model import Answer, AnswerValue, Box, Record
from annotator.task import BOTH_BAD, TIE, Question, TaskSpec
from annotator.text import text_problem

__all__ = ["AnswerError", "check_answer", "largest_answer_bytes", "question_specs", "suggested_answer"]

# how much of a value the caller sent an error message repeats
_ECHO = 80


class AnswerError(ValueError):
    """The answer does not fit the task; the message names the question and what to send instead."""


def check_answer(task: TaskSpec, raw: object, size: tuple[int, int] | None = None) -> Answer:
    """`raw` (decoded JSON) as a valid answer to `task`, or AnswerError saying what is wrong.

    `size` is the record's (width, height) as shown, which a boxes question's
    boxes must lie in; a task with a boxes question needs it.

    `raw` is an object with a value per question name. An optional question
    may be left out (or sent as null, or as "" for a text); it is then absent
    from the answer. A one-question task also takes a label's name or a list
    of names. Lists of labels lose repeated names; texts lose surrounding
    whitespace.
    """
    questions = task.questions
    solo = len(questions) == 1 and questions[0].kind in ("label", "labels")
    if solo and not isinstance(raw, Mapping):
        raw = {questions[0].name: _legacy(questions[0], raw)}
    if not isinstance(raw, Mapping):
        raise AnswerError("The answer must be an object with a value per question ("
                          f"{', '.join(_named(q) for q in questions)}).")
    by_name = {q.name: q for q in questions}
    unknown = [k for k in raw if k not in by_name]
    if unknown:
        raise AnswerError(f"{_echo(unknown[0])} is not a question of this task; its questions are "
                          f"{', '.join(by_name)}.")
    answer: Answer = {}
    for q in questions:
        value = (_check_boxes(q, raw.get(q.name), size) if q.kind == "boxes"
                 else _check_value(q, raw.get(q.name), "this task" if solo else _named(q)))
        if value is None:
            if q.required:
                raise AnswerError(f"{_named(q)} needs an answer ({_expects(q)}), or press S to skip the image.")
            continue
        answer[q.name] = value
    return answer


def suggested_answer(task: TaskSpec, record: Record) -> Answer:
    """The answer a record suggests, per question; a question without a usable suggestion is absent.

    A question's suggestion is the value of its `suggestion_column` in the
    record's metadata (ingest keeps every field of a record there). The first
    question first takes `record.suggestion`, the one value ingest kept for the
    task, which may come from another column (`--suggestion-column`). A value
    that would not pass `check_answer` (a name that is no label, a rating off
    the scale) is no suggestion.
    """
    out: Answer = {}
    for i, q in enumerate(task.questions):
        candidates = [record.suggestion] if i == 0 and record.suggestion is not None else []
        if q.suggestion_column and q.suggestion_column in record.metadata:
            candidates.append(record.metadata[q.suggestion_column])
        for candidate in candidates:
            value = (_suggested_boxes(q, candidate, (record.width, record.height)) if q.kind == "boxes"
                     else _suggested_value(q, candidate))
            if value is not None:
                out[q.name] = value
                break
    return out


# --- checking one value --------------------------------------------------------

def _legacy(q: Question, raw: object) -> object:
    """Today's forms for a task's one label (or labels) question, with today's messages: a label's name,
    or a list of names (of one name, for a label question)."""
    if isinstance(raw, str):
        return raw if q.kind == "label" else [raw]
    if not isinstance(raw, (list, tuple)) or not all(isinstance(v, str) for v in raw):
        raise AnswerError("The answer must be a label name or a list of label names "
                          f"(or an object: {{{q.name!r}: ...}}).")
    if not raw:
        raise AnswerError("Choose a label first, or press S to skip.")
    names = list(dict.fromkeys(raw))
    if q.kind == "labels":
        return names
    if len(names) != 1:
        raise AnswerError("This task takes exactly one label per image.")
    return names[0]


def _check_value(q: Question, value: object, where: str) -> AnswerValue | None:
    """The value checked and normalized for `q`; None for a question left open. `where` names the
    question in a message about a label ("this task" when it is the task's one question)."""
    if value is None:
        return None
    if q.kind == "preference":
        return _preference(q, value)
    if q.kind == "label":
        if not isinstance(value, str):
            raise AnswerError(f"{_named(q)} takes one label's name as text, not {_type(value)}.")
        return _label(q, value, where)
    if q.kind == "labels":
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise AnswerError(f"{_named(q)} takes a list of label names, not {_type(value)}.")
        chosen = [_label(q, v, where) for v in dict.fromkeys(value)]
        if not chosen and q.required:
            raise AnswerError(f"{_named(q)} needs at least one label ({', '.join(q.label_names)}).")
        return chosen
    if q.kind == "rating":
        if isinstance(value, bool) or not isinstance(value, int):
            raise AnswerError(f"{_named(q)} takes a whole number from {q.low} to {q.high}, not {_type(value)}.")
        if value not in q.scale:
            raise AnswerError(f"{_named(q)} is rated from {q.low} to {q.high}; {value} is off the scale.")
        return value
    if not isinstance(value, str):
        raise AnswerError(f"{_named(q)} takes text, not {_type(value)}.")
    problem = text_problem(value)
    if problem is not None:
        raise AnswerError(f"{_named(q)} contains {problem}; remove it and send it again.")
    text = value.strip()
    if not text:
        return None
    if len(text) < q.min_chars:
        raise AnswerError(f"{_named(q)} is too short ({len(text)} characters); write at least {q.min_chars}.")
    if len(text) > q.max_chars:
        raise AnswerError(f"{_named(q)} is too long ({len(text)} characters); keep it to at most {q.max_chars}.")
    return text


def _label(q: Question, name: str, where: str) -> str:
    if name not in q.label_names:
        problem = text_problem(name)
        if problem:  # said as every other text with such a character is (annotator/text.py)
            raise AnswerError(f"The answer contains {problem}, and no label of {where} does; choose one of: "
                              f"{', '.join(q.label_names)}.")
        raise AnswerError(f"{_echo(name)} is not a label of {where}; choose one of: {', '.join(q.label_names)}.")
    return name


# --- boxes ---------------------------------------------------------------------

# how far outside the image a box may reach (the page clamps; this forgives its rounding), and a box's keys
_BOX_SLACK = 0.5
_BOX_KEYS = frozenset({"label", "bbox", "suggested"})


def _check_boxes(q: Question, value: object, size: tuple[int, int] | None) -> list[Box] | None:
    """A boxes question's value: a list of {"label", "bbox": [x, y, w, h], "suggested"?} inside the image,
    each rounded to 0.1 px and clamped to it; None when left open."""
    if value is None:
        return None
    if size is None:
        raise TypeError("checking a boxes question needs the record's (width, height)")
    if not isinstance(value, (list, tuple)):
        raise AnswerError(f"{_named(q)} takes a list of boxes ({{\"label\": ..., \"bbox\": [x, y, w, h]}}), "
                          f"not {_type(value)}.")
    if len(value) > q.max_boxes:
        raise AnswerError(f"{_named(q)} has {len(value)} boxes; an image takes at most {q.max_boxes}.")
    if q.required and len(value) < q.min_boxes:
        raise AnswerError(f"{_named(q)} has {len(value)} boxes; draw at least {q.min_boxes}.")
    return [_check_box(q, i + 1, box, size) for i, box in enumerate(value)]


def _check_box(q: Question, n: int, box: object, size: tuple[int, int]) -> Box:
    where = f"{_named(q)}, box {n}"
    if not isinstance(box, Mapping):
        raise AnswerError(f"{where} is {_type(box)}; a box is an object {{\"label\": ..., \"bbox\": [x, y, w, h]}}.")
    unknown = [k for k in box if k not in _BOX_KEYS]
    if unknown:
        raise AnswerError(f"{where} has the unknown key {_echo(unknown[0])}; a box takes label, bbox and suggested.")
    label = box.get("label")
    if not isinstance(label, str):
        raise AnswerError(f"{where} needs a label's name as text; choose one of: {', '.join(q.label_names)}.")
    if label not in q.label_names:
        raise AnswerError(f"{where}: {_echo(label)} is not a label of this question; choose one of: "
                          f"{', '.join(q.label_names)}.")
    suggested = box.get("suggested", False)
    if not isinstance(suggested, bool):
        raise AnswerError(f"{where}: suggested is true or false, not {_type(suggested)}.")
    bbox = box.get("bbox")
    if (not isinstance(bbox, (list, tuple)) or len(bbox) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)):
        raise AnswerError(f"{where}: bbox is a list of four numbers [x, y, width, height] in the image's pixels.")
    if not all(math.isfinite(v) for v in bbox if isinstance(v, float)):
        raise AnswerError(f"{where}: bbox holds a number that is not finite.")
    x, y, w, h = bbox
    width, height = size
    if w <= 0 or h <= 0:
        raise AnswerError(f"{where}: the width and height must be above 0 (got {_echo(w)} x {_echo(h)}).")
    if x < -_BOX_SLACK or y < -_BOX_SLACK or x + w > width + _BOX_SLACK or y + h > height + _BOX_SLACK:
        raise AnswerError(f"{where} reaches outside the image ({width} x {height} pixels): "
                          f"[{_echo(x)}, {_echo(y)}, {_echo(w)}, {_echo(h)}].")
    clamped = clamp_bbox((float(x), float(y), float(w), float(h)), size)
    if clamped is None:
        raise AnswerError(f"{where} has no area inside the image ({width} x {height} pixels).")
    out: Box = {"label": label, "bbox": clamped}
    if suggested:
        out["suggested"] = True
    return out


def _suggested_boxes(q: Question, value: Any, size: tuple[int, int]) -> list[Box] | None:
    """Pre-labels in COCO form (a list of {"bbox": [x, y, w, h], "category" or "label": name}, or that list
    as JSON text) as the question's answer, each marked suggested and clamped to the image; boxes of an
    unknown category, or with no area inside the image, are dropped, and only the first `max_boxes` are
    read; None when none is left."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if not isinstance(value, (list, tuple)):
        return None
    boxes: list[Box] = []
    for item in value[:q.max_boxes]:
        if not isinstance(item, Mapping):
            continue
        label = item.get("category", item.get("label"))
        bbox = item.get("bbox")
        if not isinstance(label, str) or label not in q.label_names or not isinstance(bbox, (list, tuple)):
            continue
        if len(bbox) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox):
            continue
        try:
            numbers = tuple(float(v) for v in bbox)
        except OverflowError:
            continue
        if not all(math.isfinite(v) for v in numbers) or numbers[2] <= 0 or numbers[3] <= 0:
            continue
        clamped = clamp_bbox(numbers, size)  # type: ignore[arg-type]
        if clamped is not None:
            boxes.append({"label": label, "bbox": clamped, "suggested": True})
    return boxes or None


def _preference(q: Question, value: object) -> str:
    """One of the record's images by number ("1", "2", ...; a script may send the number), or "tie" /
    "both_bad" when the question allows them."""
    if _whole(value):
        value = str(value)
    if not isinstance(value, str):
        raise AnswerError(f"{_named(q)} takes an image's number or one of {', '.join(q.label_names)}, "
                          f"not {_type(value)}.")
    if value not in q.label_names:
        allowed = [name for name, on in ((TIE, q.tie), (BOTH_BAD, q.both_bad)) if on]
        if value in (TIE, BOTH_BAD):
            raise AnswerError(f"{_named(q)} does not allow {value!r}: choose one of the images "
                              f"({', '.join(n for n in q.label_names if n.isdigit())})"
                              + (f" or {', '.join(repr(a) for a in allowed)}." if allowed else "."))
        raise AnswerError(f"{_echo(value)} is not a choice of {_named(q)}; choose one of: "
                          f"{', '.join(q.label_names)}.")
    return value


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# --- size ------------------------------------------------------------------------

# A code point takes at most 12 bytes in JSON (Python's json.dumps, as scripts send it, writes one beyond
# U+FFFF as two \uXXXX escapes); a box's keys, brackets and four numbers as a browser or Python writes
# them (17 significant digits) take under 200 more.
_JSON_BYTES_PER_CHAR = 12
_BOX_BYTES = 200


def largest_answer_bytes(task: TaskSpec, comment_chars: int = 0) -> int:
    """The most bytes a valid answer to `task` and a comment of up to `comment_chars` take as JSON.

    The edge refuses a request body larger than its route allows before reading it; the routes that
    carry an answer allow at least this, so a full-length caption or the most boxes a question takes
    is never refused for its size, however the task is set.
    """
    def text(chars: int) -> int:
        return chars * _JSON_BYTES_PER_CHAR + 2

    def value(q: Question) -> int:
        longest = max((text(len(name)) for name in q.label_names), default=0)
        if q.kind == "label":
            return longest
        if q.kind == "labels":
            return sum(text(len(name)) + 1 for name in q.label_names) + 2
        if q.kind == "text":
            return text(q.max_chars)
        if q.kind == "boxes":
            return q.max_boxes * (_BOX_BYTES + longest) + 2
        return 32  # a rating's number, a preference's choice
    return sum(text(len(q.name)) + 1 + value(q) + 1 for q in task.questions) + 2 + text(comment_chars)


# --- suggestions ---------------------------------------------------------------

def _suggested_value(q: Question, value: Any) -> AnswerValue | None:
    """A metadata value read as a suggestion for `q`: the forms a dataset column takes (a label's name
    or a list of one, a number or a numeric string, a caption), else None."""
    if q.kind in ("label", "preference"):
        if isinstance(value, (list, tuple)) and len(value) == 1:
            value = value[0]
        return _as_label(q, value)
    if q.kind == "labels":
        names = [_as_label(q, v) for v in (value if isinstance(value, (list, tuple)) else [value])]
        chosen = list(dict.fromkeys(n for n in names if n is not None))
        return chosen or None
    if q.kind == "rating":
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        elif isinstance(value, float) and value.is_integer():
            value = int(value)
        return value if isinstance(value, int) and not isinstance(value, bool) and value in q.scale else None
    if isinstance(value, str) and value.strip() and text_problem(value) is None:
        return value.strip()
    return None


def _as_label(q: Question, value: Any) -> str | None:
    """A metadata value as one of the question's labels (a number column names a label "3" too)."""
    if value is None or isinstance(value, (dict, list, tuple, bytes, bool)):
        return None
    name = str(value)
    return name if name in q.label_names else None


# --- messages ------------------------------------------------------------------

def _named(q: Question) -> str:
    """How a message names a question: its title as the page shows it, and the name a script sends."""
    return f"{q.title!r} ({q.name})" if q.title != q.name else repr(q.name)


def _expects(q: Question) -> str:
    if q.kind in ("label", "preference"):
        return "one of " + ", ".join(q.label_names)
    if q.kind == "labels":
        return "one or more of " + ", ".join(q.label_names)
    if q.kind == "rating":
        return f"a number from {q.low} to {q.high}"
    if q.kind == "boxes":
        return f"at least {q.min_boxes} boxes" if q.min_boxes else "a list of boxes, empty when there is nothing"
    return f"a text of {max(q.min_chars, 1)} to {q.max_chars} characters"


def _echo(value: object) -> str:
    """A value the caller sent, short and printable, for a message."""
    return repr(str(value)[:_ECHO]) if isinstance(value, str) else repr(value)[:_ECHO]


def _type(value: object) -> str:
    return {bool: "true/false", int: "a number", float: "a number", str: "text", list: "a list",
            tuple: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def question_specs(task: TaskSpec) -> list[dict[str, Any]]:
    """The task's questions as plain JSON, as a script (the API's `next`) and the page read them: what
    to send for each and which key answers what. Field names are the task file's."""
    specs = []
    for q in task.questions:
        spec: dict[str, Any] = {"name": q.name, "title": q.title, "kind": q.kind, "required": q.required}
        if q.kind in ("label", "labels", "preference"):  # a preference's labels: its choices, images first
            spec["labels"] = [{"name": label.name, "key": label.key} for label in q.labels]
        elif q.kind == "boxes":
            spec.update({"labels": [{"name": label.name, "key": label.key} for label in q.labels],
                         "min_boxes": q.min_boxes, "max_boxes": q.max_boxes})
        elif q.kind == "rating":  # a value's key is its last digit
            spec.update({"min": q.low, "max": q.high, "min_word": q.low_word, "max_word": q.high_word,
                         "keys": {str(v): str(v)[-1] for v in q.scale}})
        else:
            spec.update({"min_chars": q.min_chars, "max_chars": q.max_chars, "key": q.key})
        specs.append(spec)
    return specs
