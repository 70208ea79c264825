"""The task spec (task.toml): what is asked about each record, read once at start-up.

A task is a list of questions. Today's task files (`kind` + `[[labels]]` at the
top) are read as a task with one question, so they keep working unchanged. A
wrong value stops start-up with one message naming the key, because the person
who reads it is an organizer editing a task file, not a developer.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from annotator.config import ConfigError
from annotator.model import LegacyQuestion

QuestionKind = Literal["label", "labels", "rating", "text", "preference", "boxes"]
QUESTION_KINDS: tuple[QuestionKind, ...] = ("label", "labels", "rating", "text", "preference", "boxes")
# a preference question's answers besides an image's number, and their keys (images take 1, 2, ...)
TIE, BOTH_BAD = "tie", "both_bad"
PREFERENCE_KEYS = {TIE: "t", BOTH_BAD: "b"}
MAX_IMAGES = 9  # a record's images are chosen by one digit key each
# today's top-level `kind` values, and the question kind each one is
LEGACY_KINDS: dict[str, QuestionKind] = {"single_label": "label", "multi_label": "labels"}
# a question's name becomes a column of the export and a key of the answer object
NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,31}")
# names the export's records and responses tables use for their own columns (annotator/export/format.py),
# and the store's, so that no question's column shadows one of them
RESERVED_NAMES = frozenset({"record_id", "source_key", "image", "image_file", "image_path", "sha256", "width",
                            "height", "metadata", "suggestion", "position", "extra_answers", "tied", "agreement",
                            "n_answers", "n_skipped", "status", "answers", "answer", "annotator", "user_id",
                            "comment", "time", "time_spent_ms", "created_at", "updated_at", "submitted", "skipped",
                            "final", "final_by", "final_at"})
MAX_TEXT_CHARS = 10_000
# a boxes question: how many boxes one answer may hold by default, and at most (each is checked on submit)
DEFAULT_MAX_BOXES, MAX_BOXES_CEILING = 200, 500


@dataclass(frozen=True)
class Label:
    name: str
    key: str


@dataclass(frozen=True)
class Question:
    """One question of the task. Fields that do not belong to its kind keep their defaults.

    label / labels: `labels` with their keys. preference: `labels` are the
    record's images by number ("1", "2", ... typed by that digit), then "tie"
    (key T) and "both_bad" (key B) when `tie` / `both_bad` allow them, so a
    preference is checked, counted and agreed on as a label question is. rating: the integers `low`..`high`, the
    key of a value is its last digit, `low_word`/`high_word` name the ends. text:
    `min_chars`..`max_chars`; `key` focuses the box (none: Tab reaches it). boxes: `labels` as
    for a label question, and `min_boxes`..`max_boxes` boxes per answer.
    """
    name: str
    title: str
    kind: QuestionKind
    required: bool = True
    labels: tuple[Label, ...] = ()
    low: int = 1
    high: int = 5
    low_word: str = ""
    high_word: str = ""
    min_chars: int = 0
    max_chars: int = 2000
    key: str = ""
    min_boxes: int = 0
    max_boxes: int = DEFAULT_MAX_BOXES
    suggestion_column: str | None = None
    tie: bool = False
    both_bad: bool = False

    @property
    def label_names(self) -> tuple[str, ...]:
        return tuple(label.name for label in self.labels)

    @property
    def scale(self) -> range:
        """The values a rating question takes."""
        return range(self.low, self.high + 1)


@dataclass(frozen=True)
class Quality:
    """Gold records, warm-up and quotas (issue 17; annotator/gold.py has the rules, docs/quality.md the how)."""
    gold_column: str | None = None
    gold_file: str | None = None
    gold_rate: float = 0.0
    gold_feedback: bool = False
    warmup: int = 0
    max_answers_per_person: int | None = None

    @property
    def has_gold(self) -> bool:
        return self.gold_column is not None or self.gold_file is not None


@dataclass(frozen=True)
class TaskSpec:
    title: str
    guidelines: str
    questions: tuple[Question, ...]
    comment: bool
    overlap: int
    order: Literal["sequential", "shuffle"]
    seed: int
    quality: Quality = field(default_factory=Quality)
    # what a record shows (the task file's [record] table): the dataset / metadata columns of its images, in
    # order (empty: the one image of today's records), and of the texts shown above them
    image_columns: tuple[str, ...] = ()
    text_columns: tuple[str, ...] = ()


def legacy_question(task: TaskSpec) -> LegacyQuestion | None:
    """What answers stored as lists of labels (before typed answers) answered: the task's first question,
    when it is a label or labels question (today's task files have only that one). The store migration,
    the recovery files and the restore of an old export read those lists through it."""
    first = task.questions[0]
    return LegacyQuestion(first.name, first.kind) if first.kind in ("label", "labels") else None  # type: ignore[arg-type]


def record_suggestion_column(task: TaskSpec) -> str | None:
    """The column ingest keeps as a record's one `suggestion`: the first question's (a `--suggestion-column`
    may name another). answers.suggested_answer offers it to that question; the other questions read their
    own column from the record's metadata, which ingest keeps whole."""
    return task.questions[0].suggestion_column


def check_answers_fit(task: TaskSpec, answered: set[str], task_file: Path) -> set[str]:
    """The questions the stored answers hold values for that this task does not ask (kept in the store,
    but neither shown nor exported: a question renamed or removed). Raises ConfigError when the task asks
    none of them: a TASK_FILE of another task, whose export would hold nothing but empty answers."""
    asked = {q.name for q in task.questions}
    if answered and not answered & asked:
        raise ConfigError(
            f"TASK_FILE={str(task_file)!r} is not the task the stored answers were given for: they answer "
            f"{', '.join(sorted(answered))}; it asks {', '.join(sorted(asked))}. Set TASK_FILE to the task file "
            f"these answers were given with, or use a new DATA_DIR to start afresh.")
    return answered - asked


def classification_task(title: str, labels: tuple[Label, ...], *, kind: str = "single_label",
                        question: str = "Choose a label", guidelines: str = "", comment: bool = False,
                        overlap: int = 1, order: Literal["sequential", "shuffle"] = "sequential", seed: int = 0,
                        suggestion_column: str | None = None) -> TaskSpec:
    """A task of today's form: one label (or labels) question, as a legacy task file reads."""
    q_kind = LEGACY_KINDS[kind]
    return TaskSpec(title=title, guidelines=guidelines, comment=comment, overlap=overlap, order=order, seed=seed,
                    questions=(Question(name=q_kind, title=question, kind=q_kind, labels=labels,
                                        suggestion_column=suggestion_column),))


# The page's action keys (Enter, Backspace and Esc are not one character, so no label can take them):
# S skips, ? shows the keys. C and G are kept for the comment and the guidelines (issue 14), so no label
# is given them automatically; a task file that names them explicitly still may.
_RESERVED_KEYS = frozenset({"enter", "s", "backspace", "?"})
_KEPT_FOR_ACTIONS = frozenset({"c", "g"})
# Keys given to labels without one, by position: 1-9, 0, then the letters no action uses (33 in all).
AUTO_KEYS = "1234567890" + "".join(c for c in "abcdefghijklmnopqrstuvwxyz"
                                    if c not in _RESERVED_KEYS | _KEPT_FOR_ACTIONS)


def auto_key(position: int) -> str:
    """The key a label at `position` gets when the task file names none; "" (no key) past the 33rd."""
    return AUTO_KEYS[position] if position < len(AUTO_KEYS) else ""


_TASK_KEYS = {"title", "guidelines", "question", "kind", "labels", "comment", "overlap", "order",
              "seed", "suggestion_column", "questions", "record"} | {"gold_column", "gold_file", "gold_rate",
                                                                     "gold_feedback", "warmup", "max_answers_per_person"}
_RECORD_KEYS = {"images", "texts"}
_LEGACY_KEYS = {"question", "kind", "labels", "suggestion_column"}
_QUESTION_KEYS = {
    "label": {"name", "title", "kind", "required", "labels", "suggestion_column"},
    "labels": {"name", "title", "kind", "required", "labels", "suggestion_column"},
    "rating": {"name", "title", "kind", "required", "min", "max", "min_word", "max_word", "suggestion_column"},
    "text": {"name", "title", "kind", "required", "min_chars", "max_chars", "key", "suggestion_column"},
    "boxes": {"name", "title", "kind", "required", "labels", "min_boxes", "max_boxes", "suggestion_column"},
    "preference": {"name", "title", "kind", "required", "tie", "both_bad", "suggestion_column"},
}


def _task_error(path: Path, key: str, value: object, allowed: str) -> ConfigError:
    return ConfigError(f"{path}: {key} = {value!r} is not allowed; {allowed}.")


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def load_task(path: Path) -> TaskSpec:
    """Read and check the task file; raise ConfigError naming the first wrong key."""
    if not path.is_file():
        raise ConfigError(f"TASK_FILE={str(path)!r} does not exist; point TASK_FILE at a task.toml "
                          f"(see data/task.toml for an example).")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}).") from None
    unknown = sorted(set(raw) - _TASK_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r}; allowed keys are {', '.join(sorted(_TASK_KEYS))}.")

    title = raw.get("title")
    if not isinstance(title, str) or not title.strip():
        raise _task_error(path, "title", title, "it must be a non-empty string")
    guidelines = raw.get("guidelines", "")
    if not isinstance(guidelines, str):
        raise _task_error(path, "guidelines", guidelines, "it must be a string")
    order = raw.get("order", "sequential")
    if order not in ("sequential", "shuffle"):
        raise _task_error(path, "order", order, "use 'sequential' or 'shuffle'")
    overlap = raw.get("overlap", 1)
    if not _whole(overlap) or overlap < 1:
        raise _task_error(path, "overlap", overlap, "it is the number of annotators per record, a whole number >= 1")
    seed = raw.get("seed", 0)
    if not _whole(seed):
        raise _task_error(path, "seed", seed, "it must be a whole number")
    comment = raw.get("comment", False)
    if not isinstance(comment, bool):
        raise _task_error(path, "comment", comment, "use true or false")
    if "questions" in raw:
        legacy = sorted(_LEGACY_KEYS & set(raw))
        if legacy:
            raise _task_error(path, legacy[0], raw[legacy[0]],
                              "with [[questions]], each question has its own kind, title and labels: move "
                              f"{legacy[0]!r} into its question")
        questions = _questions(path, raw["questions"])
    else:
        questions = (_legacy_question(path, raw),)
    image_columns, text_columns = _record(path, raw.get("record", {}))
    questions = tuple(_with_images(path, q, len(image_columns)) if q.kind == "preference" else q for q in questions)
    boxes = next((q for q in questions if q.kind == "boxes"), None)
    if boxes is not None and image_columns:
        raise _task_error(path, "record.images", list(image_columns),
                          f"the boxes question {boxes.name!r} draws on a record's one image: leave [record] images "
                          "out, or ask for boxes in a task of its own")
    return TaskSpec(title=title, guidelines=guidelines, questions=questions, comment=comment, overlap=overlap,
                    order=order, seed=seed, quality=_quality(path, raw), image_columns=image_columns,
                    text_columns=text_columns)


def _quality(path: Path, raw: dict[str, Any]) -> Quality:
    """The gold, warm-up and quota keys; each wrong value gets its own start-up message."""
    column = raw.get("gold_column")
    if column is not None and (not isinstance(column, str) or not column.strip()):
        raise _task_error(path, "gold_column", column, "it names the source column holding each gold record's "
                          "expected answer (records with an empty value are not gold)")
    gold_file = raw.get("gold_file")
    if gold_file is not None and (not isinstance(gold_file, str) or not gold_file.strip()):
        raise _task_error(path, "gold_file", gold_file, "it is the path of a JSONL file of "
                          '{"key": ..., "answer": ..., "explanation": ...} lines, relative to the task file')
    if gold_file is not None and not (path.parent / gold_file).is_file():
        raise _task_error(path, "gold_file", gold_file, f"no such file next to the task file ({path.parent})")
    has_gold = column is not None or gold_file is not None
    rate = raw.get("gold_rate", 0.1 if has_gold else 0.0)
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 0.5:
        raise _task_error(path, "gold_rate", rate, "it is the share of each person's records that are gold, "
                          "a number from 0 to 0.5")
    feedback = raw.get("gold_feedback", False)
    if not isinstance(feedback, bool):
        raise _task_error(path, "gold_feedback", feedback, "use true or false")
    warmup = raw.get("warmup", 0)
    if not _whole(warmup) or not 0 <= warmup <= 100:
        raise _task_error(path, "warmup", warmup, "it is how many gold records each person answers first, "
                          "a whole number from 0 to 100")
    if (rate or warmup or feedback) and not has_gold:
        key = "gold_rate" if rate else "warmup" if warmup else "gold_feedback"
        raise _task_error(path, key, raw[key], "it needs gold records: set gold_column or gold_file too")
    quota = raw.get("max_answers_per_person")
    if quota is not None and (not _whole(quota) or quota < 1):
        raise _task_error(path, "max_answers_per_person", quota, "it is the most answers one person gives, a "
                          "whole number >= 1 (leave it out for no limit)")
    return Quality(gold_column=column, gold_file=str(path.parent / gold_file) if gold_file else None,
                   gold_rate=float(rate), gold_feedback=feedback, warmup=warmup, max_answers_per_person=quota)




def _record(path: Path, raw: object) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The [record] table: `images` (2 to MAX_IMAGES column names) and `texts` (column names)."""
    if not isinstance(raw, dict):
        raise _task_error(path, "record", raw, "it is a table: [record] with images = [...] and texts = [...]")
    unknown = sorted(set(raw) - _RECORD_KEYS)
    if unknown:
        raise _task_error(path, f"record.{unknown[0]}", raw[unknown[0]], "[record] takes images and texts")
    found: dict[str, tuple[str, ...]] = {}
    for key in ("images", "texts"):
        value = raw.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value) \
                or len(set(value)) != len(value):
            raise _task_error(path, f"record.{key}", value, "it is a list of distinct column names")
        found[key] = tuple(v.strip() for v in value)
    images, texts = found["images"], found["texts"]
    if len(images) == 1 or len(images) > MAX_IMAGES:
        raise _task_error(path, "record.images", list(images),
                          f"name 2 to {MAX_IMAGES} image columns (leave it out for records of one image)")
    both = set(images) & set(texts)
    if both:
        raise _task_error(path, "record.texts", list(texts), f"{sorted(both)[0]!r} is an image column already")
    return images, texts


def _with_images(path: Path, q: Question, images: int) -> Question:
    """A preference question's choices, once the number of images per record is known."""
    if images < 2:
        raise _task_error(path, f"the {q.name} question's kind", "preference",
                          "a preference question chooses one of a record's images, so each record needs two or "
                          "more: name their columns in [record] images = [\"image_a\", \"image_b\"]")
    labels = [Label(str(n), str(n)) for n in range(1, images + 1)]
    labels += [Label(name, PREFERENCE_KEYS[name]) for name, allowed in ((TIE, q.tie), (BOTH_BAD, q.both_bad))
               if allowed]
    return replace(q, labels=tuple(labels))


def _legacy_question(path: Path, raw: dict[str, Any]) -> Question:
    """Today's task file: `kind`, `question`, `[[labels]]` and `suggestion_column` at the top."""
    kind = raw.get("kind", "single_label")
    if kind not in LEGACY_KINDS:
        raise _task_error(path, "kind", kind, "use 'single_label' or 'multi_label' (or a [[questions]] list)")
    title = raw.get("question", "Choose a label")
    if not isinstance(title, str):
        raise _task_error(path, "question", title, "it must be a string")
    q_kind = LEGACY_KINDS[kind]
    return Question(name=q_kind, title=title, kind=q_kind, labels=_labels(path, raw.get("labels"), "labels"),
                    suggestion_column=_suggestion(path, raw, "suggestion_column"))


def _suggestion(path: Path, raw: dict[str, Any], where: str) -> str | None:
    value = raw.get("suggestion_column")
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise _task_error(path, where, value, "it must name a metadata column, or be left out")
    return value


def _questions(path: Path, raw: object) -> tuple[Question, ...]:
    if not isinstance(raw, list) or not raw:
        raise _task_error(path, "questions", raw, "give at least one [[questions]] table with a name and a kind")
    questions = tuple(_question(path, f"questions[{i}]", item) for i, item in enumerate(raw))
    names = [q.name for q in questions]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise _task_error(path, "questions.name", dup, "question names must be unique")
    return questions


def _question(path: Path, where: str, raw: object) -> Question:
    if not isinstance(raw, dict):
        raise _task_error(path, where, raw, "each question is a [[questions]] table with a name and a kind")
    kind = raw.get("kind")
    if kind not in QUESTION_KINDS:
        raise _task_error(path, f"{where}.kind", kind, f"use one of {', '.join(QUESTION_KINDS)}")
    unknown = sorted(set(raw) - _QUESTION_KEYS[kind])
    if unknown:
        raise _task_error(path, f"{where}.{unknown[0]}", raw[unknown[0]],
                          f"a {kind} question takes {', '.join(sorted(_QUESTION_KEYS[kind]))}")
    name = raw.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or name in RESERVED_NAMES:
        raise _task_error(path, f"{where}.name", name,
                          "a name is 1-32 lower-case letters, digits or _ starting with a letter (it names the "
                          f"export's column), and not one of the export's own: {', '.join(sorted(RESERVED_NAMES))}")
    title = raw.get("title", name)
    if not isinstance(title, str) or not title.strip():
        raise _task_error(path, f"{where}.title", title, "it must be a non-empty string")
    required = raw.get("required", True)
    if not isinstance(required, bool):
        raise _task_error(path, f"{where}.required", required, "use true or false")
    common = dict(name=name, title=title, kind=kind, required=required,
                  suggestion_column=_suggestion(path, raw, f"{where}.suggestion_column"))
    if kind in ("label", "labels"):
        return Question(**common, labels=_labels(path, raw.get("labels"), f"{where}.labels"))
    if kind == "preference":  # its choices (labels) follow from [record] images: load_task adds them
        flags = {key: raw.get(key, False) for key in ("tie", "both_bad")}
        for key, value in flags.items():
            if not isinstance(value, bool):
                raise _task_error(path, f"{where}.{key}", value, "use true or false")
        return Question(**common, **flags)
    if kind == "rating":
        return Question(**common, **_rating(path, where, raw))
    if kind == "boxes":
        return Question(**common, labels=_labels(path, raw.get("labels"), f"{where}.labels"),
                        **_box_counts(path, where, raw))
    return Question(**common, **_text(path, where, raw))


def _rating(path: Path, where: str, raw: dict[str, Any]) -> dict[str, Any]:
    """An integer scale whose values are typed by their last digit, so at most ten values and no clash."""
    low, high = raw.get("min", 1), raw.get("max", 5)
    if not _whole(low) or low not in (0, 1):
        raise _task_error(path, f"{where}.min", low, "a rating scale starts at 0 or 1")
    if not _whole(high) or not low < high <= low + 9:
        raise _task_error(path, f"{where}.max", high,
                          f"a rating scale from {low} ends above it and at most at {low + 9} "
                          "(each value is typed by one digit key)")
    words = {}
    for key in ("min_word", "max_word"):
        value = raw.get(key, "")
        if not isinstance(value, str):
            raise _task_error(path, f"{where}.{key}", value, "it must be a string")
        words[key.replace("min", "low").replace("max", "high")] = value.strip()
    return dict(low=low, high=high, **words)


def _box_counts(path: Path, where: str, raw: dict[str, Any]) -> dict[str, Any]:
    """How many boxes one answer holds: a cap, since every box of every answer is checked and stored."""
    low, high = raw.get("min_boxes", 0), raw.get("max_boxes", DEFAULT_MAX_BOXES)
    if not _whole(low) or not 0 <= low <= MAX_BOXES_CEILING:
        raise _task_error(path, f"{where}.min_boxes", low, f"it must be a whole number from 0 to {MAX_BOXES_CEILING}")
    if not _whole(high) or not max(low, 1) <= high <= MAX_BOXES_CEILING:
        raise _task_error(path, f"{where}.max_boxes", high,
                          f"it must be a whole number from {max(low, 1)} (min_boxes) to {MAX_BOXES_CEILING}")
    return dict(min_boxes=low, max_boxes=high)


def _text(path: Path, where: str, raw: dict[str, Any]) -> dict[str, Any]:
    low, high = raw.get("min_chars", 0), raw.get("max_chars", 2000)
    if not _whole(low) or low < 0:
        raise _task_error(path, f"{where}.min_chars", low, "it must be a whole number >= 0")
    if not _whole(high) or not max(low, 1) <= high <= MAX_TEXT_CHARS:
        raise _task_error(path, f"{where}.max_chars", high,
                          f"it must be a whole number from {max(low, 1)} (min_chars) to {MAX_TEXT_CHARS}")
    key = raw.get("key", "")
    if not isinstance(key, str) or len(key) > 1 or key.lower() in _RESERVED_KEYS or key.isdigit():
        raise _task_error(path, f"{where}.key", key,
                          "the key that focuses the box is one letter, not s or ? (or leave it out: Tab reaches it)")
    return dict(min_chars=low, max_chars=high, key=key.lower())


def _labels(path: Path, raw: object, where: str) -> tuple[Label, ...]:
    if not isinstance(raw, list) or not raw:
        raise _task_error(path, where, raw, f"give at least one label (a [[{where}]] table with a name)")
    labels: list[Label] = []
    for i, item in enumerate(raw):
        at = f"{where}[{i}]"
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict):
            raise _task_error(path, at, item, "each label is a table with a name and an optional key")
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            raise _task_error(path, f"{at}.name", name, "each label needs a non-empty name")
        if "key" not in item:
            labels.append(Label(name=name.strip(), key=auto_key(i)))
            continue
        key = item["key"]
        if not isinstance(key, str) or len(key) != 1 or key.lower() in _RESERVED_KEYS:
            raise _task_error(path, f"{at}.key", key,
                              "a shortcut is one character and not s or ? (those skip and show help)")
        labels.append(Label(name=name.strip(), key=key.lower()))
    names = [label.name for label in labels]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise _task_error(path, where, dup, "label names must be unique")
    keys = [label.key for label in labels if label.key]
    dup_key = next((k for k in keys if keys.count(k) > 1), None)
    if dup_key is not None:
        raise _task_error(path, f"{where}.key", dup_key,
                          "shortcut keys must be unique (a label without a key gets one by its position: "
                          f"{AUTO_KEYS[:10]}, then {', '.join(AUTO_KEYS[10:])})")
    return tuple(labels)
