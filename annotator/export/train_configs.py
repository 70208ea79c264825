"""The ready-to-train configs of the Hub export: a registry of kinds, each turning one question into one config.

Beside `records` and `responses` (everything, for restore and analysis), the
export publishes configs a training script loads as they come:

* `classification` (label and labels questions): `record_id`, `image`, `label`,
  a `ClassLabel` with the task's label names in task order (labels: a list of
  them), one row per record with a consensus; tied records are left out;
* `rating`: `record_id`, `image`, `rating_median`, `rating_mean`, `num_ratings`,
  one row per record with a rating;
* `captions` (text questions): `record_id`, `image`, `text`, one row per
  non-empty answer;
* `objects` (boxes questions, annotator/export/objects.py): the layout of the
  Hub's object-detection guides, one row per complete record;
* `preference` (preference questions, records of several images): `record_id`,
  `prompt` (the record's first text), `image_chosen` (the image the majority
  chose), `image_rejected` (another image of the record: one row per image not
  chosen, so a pair gives one row) and the vote counts; records whose majority
  is a tie between images, "tie" or "both_bad" are left out and counted.

A config is named after its kind (`classification`) when one question of the
task has that kind, and `<kind>_<question>` (`classification_animal`) when
several have: names never collide, with each other nor with `records` and
`responses`, and every folder the export owns is recognisable (`owned_folder`)
so a re-export deletes the shards of configs that no longer exist.

A record an admin settled (issue 17, adjudication) has its final answer in
`RecordAnswers.final`; every kind prefers it to the consensus, and takes the
record even when its answers tied (or, for `objects`, it is not complete).

Plug-in point: a new kind is one more `Kind` in `KINDS`, with its `features`
(the columns of its config, as `datasets` types) and its `rows`
(what one record gives: zero or more rows, each reason to leave a record or an
answer out counted in `left_out`). It reads the record's data from
`RecordAnswers`, which the tables builder fills once per record (the image
bytes it already read for `records`, the answers per question, the consensus
`metrics` computed); a kind that needs more of the record (several images)
adds a field there. Nothing else changes: the builder, the Hub push, the card
and the deletion of stale shards all go through this registry.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from statistics import fmean
from typing import Any, Callable, Mapping

import pyarrow as pa

from annotator.export.format import CONFIGS, IMAGE
from annotator.export.objects import objects_features, objects_row
from annotator.export.summary import ConfigSummary
from annotator.model import Record
from annotator.task import BOTH_BAD, TIE, Question, TaskSpec

# why a record (or an answer) gave no row; counted per config and stated in the card
UNANSWERED = "records without an answer"
TIED = "tied records"
UNKNOWN_LABEL = "records whose consensus names a label the task no longer has"
NO_IMAGE = "records exported without their image"
EMPTY_TEXT = "empty answers"
NOT_COMPLETE = "records not complete yet"
TIED_IMAGES = "records whose majority is a tie between images"
MAJORITY_TIE = 'records whose majority answered "tie"'
MAJORITY_BOTH_BAD = 'records whose majority answered "both_bad"'


@dataclass(frozen=True)
class RecordAnswers:
    """One record as the kinds read it: built once per record by the tables builder.

    `image`: {"bytes", "path"} as in `records` (the same bytes, read once), None
    when the file could not be read. `values`: per question, the submitted
    answers that answer it (an optional question left open is not there).
    `consensus` and `ties`: per label, labels, rating or preference question,
    what `metrics` gives (the majority label, the labels more than half chose,
    the median rating; the tied labels). `more_images`: the record's images
    after the first, like `image` (empty for a task of one image); `texts`:
    the record's texts by the task's text column. `final`: the admin's final
    answer by question (issue 17), empty when nobody settled the record.
    """
    record: Record
    image: dict[str, Any] | None
    values: Mapping[str, list[Any]]
    consensus: Mapping[str, Any]
    ties: Mapping[str, list[str]]
    status: str = "complete"  # model.record_status: complete / partial / untouched
    more_images: tuple[dict[str, Any] | None, ...] = ()
    texts: Mapping[str, str | None] = field(default_factory=dict)
    final: Mapping[str, Any] = field(default_factory=dict)


Rows = Callable[[Question, RecordAnswers, Counter[str]], list[dict[str, Any]]]


@dataclass(frozen=True)
class Kind:
    """One kind of ready-to-train config: which questions it serves, its columns and its rows."""
    word: str                            # the config's name, its prefix when several questions have this kind
    question_kinds: tuple[str, ...]      # the question kinds it serves
    task_category: str                   # the Hub task id the card lists for such a question
    features: Callable[[Question], dict[str, Any]]
    rows: Rows
    holds: Callable[[Question], str]     # the card's words for one row


def _base(view: RecordAnswers) -> dict[str, Any]:
    return {"record_id": view.record.id, IMAGE: view.image}


def _classification_features(q: Question) -> dict[str, Any]:
    from datasets import ClassLabel, Image, List, Value
    label = ClassLabel(names=list(q.label_names))
    return {"record_id": Value("int32"), IMAGE: Image(), "label": List(label) if q.kind == "labels" else label}


def _classification_rows(q: Question, view: RecordAnswers, left_out: Counter[str]) -> list[dict[str, Any]]:
    """The record's final answer, else its consensus, as class ids, unless it has no answer, a tie, an
    unknown label or no image."""
    consensus = view.final.get(q.name)
    if consensus is None:
        if not view.values[q.name]:
            left_out[UNANSWERED] += 1
            return []
        if view.ties[q.name]:
            left_out[TIED] += 1
            return []
        consensus = view.consensus[q.name]
    chosen = set(consensus) if q.kind == "labels" else {consensus}
    names = q.label_names
    if not chosen <= set(names):
        left_out[UNKNOWN_LABEL] += 1
        return []
    if view.image is None:
        left_out[NO_IMAGE] += 1
        return []
    label: int | list[int] = ([i for i, name in enumerate(names) if name in chosen] if q.kind == "labels"
                              else names.index(consensus))
    return [{**_base(view), "label": label}]


def _classification_holds(q: Question) -> str:
    names = ", ".join(q.label_names)
    if q.kind == "labels":
        return (f"`label` is a list of `ClassLabel` ({names}): the final answer an admin set, else the labels "
                f"more than half of the answers chose (possibly none); records with a label chosen by exactly "
                f"half and no final answer are left out")
    return (f"`label` is a `ClassLabel` ({names}): the final answer an admin set, else the majority label; "
            f"tied records without a final answer are left out")


def _rating_features(q: Question) -> dict[str, Any]:
    from datasets import Image, Value
    return {"record_id": Value("int32"), IMAGE: Image(), "rating_median": Value("float64"),
            "rating_mean": Value("float64"), "num_ratings": Value("int32")}


def _rating_rows(q: Question, view: RecordAnswers, left_out: Counter[str]) -> list[dict[str, Any]]:
    """The ratings' median (an admin's final rating instead, when set), mean and count."""
    values = view.values[q.name]
    final = view.final.get(q.name)
    if not values and final is None:
        left_out[UNANSWERED] += 1
        return []
    if view.image is None:
        left_out[NO_IMAGE] += 1
        return []
    return [{**_base(view), "rating_median": view.consensus[q.name] if final is None else final,
             "rating_mean": fmean(values) if values else None, "num_ratings": len(values)}]


def _rating_holds(q: Question) -> str:
    ends = f", {q.low_word} to {q.high_word}" if q.low_word or q.high_word else ""
    return (f"the ratings ({q.low} to {q.high}{ends}) of each record: `rating_median` (the final rating when an "
            f"admin set one), `rating_mean` and `num_ratings`")


def _caption_features(q: Question) -> dict[str, Any]:
    from datasets import Image, Value
    return {"record_id": Value("int32"), IMAGE: Image(), "text": Value("string")}


def _caption_rows(q: Question, view: RecordAnswers, left_out: Counter[str]) -> list[dict[str, Any]]:
    """One row per non-empty answer; a record an admin settled gives one row, the final text."""
    final = view.final.get(q.name)
    texts = [final] if final is not None else [v for v in view.values[q.name] if isinstance(v, str) and v.strip()]
    if final is None:
        left_out[EMPTY_TEXT] += len(view.values[q.name]) - len(texts)
    if texts and view.image is None:
        left_out[NO_IMAGE] += 1
        return []
    return [{**_base(view), "text": text} for text in texts]


def _caption_holds(q: Question) -> str:
    return ("`text`: one row per answer (an image captioned by three people has three rows), or one row with the "
            "final text when an admin set one; skips and empty answers are left out")


def _objects_rows(q: Question, view: RecordAnswers, left_out: Counter[str]) -> list[dict[str, Any]]:
    """A complete record's consensus boxes (a partial record's few answers are no consensus to train on), or
    the final boxes an admin set, complete or not."""
    final = view.final.get(q.name)
    if final is None and view.status != "complete":
        left_out[NOT_COMPLETE] += 1
        return []
    if view.image is None:
        left_out[NO_IMAGE] += 1
        return []
    return [objects_row(q, view.record.id, view.image, view.record.width, view.record.height,
                        view.consensus[q.name] if final is None else final)]


def _objects_holds(q: Question) -> str:
    return ("the layout of the Hub's object-detection guides: `image_id`, `image`, `width`, `height` and "
            "`objects` = {`id`, `area`, `bbox` (COCO `[x_min, y_min, width, height]` in the image's pixels), "
            f"`category` (a `ClassLabel`: {', '.join(q.label_names)})}}, the consensus boxes of complete "
            "records, or the final boxes an admin set; the Transformers object-detection guide "
            "(https://huggingface.co/docs/transformers/tasks/object_detection) trains on it from its data "
            "augmentation step (`ds.features[\"objects\"][\"category\"].feature.names` are the labels)")


def _preference_features(q: Question) -> dict[str, Any]:
    from datasets import Image, Value
    return {"record_id": Value("int32"), "prompt": Value("string"), "image_chosen": Image(),
            "image_rejected": Image(), "chosen": Value("int32"), "rejected": Value("int32"),
            "votes_chosen": Value("int32"), "votes_rejected": Value("int32"), "votes_tie": Value("int32"),
            "votes_both_bad": Value("int32"), "num_votes": Value("int32")}


def _preference_rows(q: Question, view: RecordAnswers, left_out: Counter[str]) -> list[dict[str, Any]]:
    """The image the majority chose (an admin's final choice instead, when set) against each other image of
    the record; none on a tie between images, a majority of "tie" or "both_bad", or a missing image."""
    values = view.values[q.name]
    chosen = view.final.get(q.name)
    if chosen is None:
        if not values:
            left_out[UNANSWERED] += 1
            return []
        if view.ties[q.name]:
            left_out[TIED_IMAGES if all(v.isdigit() for v in view.ties[q.name]) else TIED] += 1
            return []
        chosen = view.consensus[q.name]
    if chosen in (TIE, BOTH_BAD):
        left_out[MAJORITY_TIE if chosen == TIE else MAJORITY_BOTH_BAD] += 1
        return []
    images = (view.image, *view.more_images)
    if not chosen.isdigit() or not 1 <= int(chosen) <= len(images):
        left_out[UNKNOWN_LABEL] += 1
        return []
    if any(image is None for image in images):
        left_out[NO_IMAGE] += 1
        return []
    votes = Counter(values)
    base = {"record_id": view.record.id, "prompt": next(iter(view.texts.values()), None),
            "image_chosen": images[int(chosen) - 1],
            "chosen": int(chosen), "votes_chosen": votes[chosen], "votes_tie": votes[TIE],
            "votes_both_bad": votes[BOTH_BAD], "num_votes": len(values)}
    return [{**base, "image_rejected": images[n - 1], "rejected": n, "votes_rejected": votes[str(n)]}
            for n in range(1, len(images) + 1) if n != int(chosen)]


def _preference_holds(q: Question) -> str:
    return ("`prompt` (the record's first `[record] texts` column, null without one), `image_chosen` (the "
            "image most answers chose, or the one an admin chose as the final answer) and `image_rejected` (another image of the record: a pair gives one "
            "row, a record of n images n - 1 rows, the chosen one against each other), `chosen` and "
            "`rejected` (the images' numbers, 1 the first), `votes_chosen`, `votes_rejected`, `votes_tie`, "
            "`votes_both_bad` and `num_votes` (all answers); records whose majority is a tie between images, "
            '"tie" or "both_bad" are left out')


CLASSIFICATION = Kind("classification", ("label", "labels"), "image-classification", _classification_features,
                      _classification_rows, _classification_holds)
RATING = Kind("rating", ("rating",), "image-classification", _rating_features, _rating_rows, _rating_holds)
CAPTIONS = Kind("captions", ("text",), "image-to-text", _caption_features, _caption_rows, _caption_holds)
OBJECTS = Kind("objects", ("boxes",), "object-detection", objects_features, _objects_rows, _objects_holds)
PREFERENCE = Kind("preference", ("preference",), "text-to-image", _preference_features,
                  _preference_rows, _preference_holds)
KINDS: tuple[Kind, ...] = (CLASSIFICATION, RATING, CAPTIONS, OBJECTS, PREFERENCE)


class TrainConfig:
    """One ready-to-train config of one export: a kind applied to one question; counts in `summary`."""

    def __init__(self, kind: Kind, question: Question, name: str) -> None:
        from datasets import Features
        self.kind, self.question, self.name = kind, question, name
        self.schema: pa.Schema = Features(kind.features(question)).arrow_schema
        self.summary = ConfigSummary(name, question.name, kind.word, kind.holds(question))

    def rows(self, view: RecordAnswers) -> list[dict[str, Any]]:
        out = self.kind.rows(self.question, view, self.summary.left_out)
        self.summary.rows += len(out)
        return out


def train_configs(task: TaskSpec) -> list[TrainConfig]:
    """The ready-to-train configs of `task`, kind by kind, in task order within a kind."""
    configs = []
    for kind in KINDS:
        questions = [q for q in task.questions if q.kind in kind.question_kinds]
        for q in questions:
            configs.append(TrainConfig(kind, q, kind.word if len(questions) == 1 else f"{kind.word}_{q.name}"))
    return configs


def task_categories(task: TaskSpec) -> list[str]:
    """The Hub task ids of the task's questions, in the order of KINDS."""
    return list(dict.fromkeys(kind.task_category for kind in KINDS
                              if any(q.kind in kind.question_kinds for q in task.questions)))


def owned_folder(folder: str) -> bool:
    """Whether a top-level folder of the export repo is the export's: its two tables or a config of a kind."""
    return folder in CONFIGS or any(folder == k.word or folder.startswith(f"{k.word}_") for k in KINDS)
