"""Review and adjudication (issue 17): each record's consensus and agreement, and the admin's review queue.

A record's consensus and agreement per question are computed here once, for
the export (`annotator.export.tables`) and the review queue alike:
label and preference the majority (ties stated), labels the labels more than
half of the answers chose, rating the median, boxes the boxes a majority drew
(agreement: the mean pairwise F1, annotator.boxes); text has neither.

The review queue lists the records people answered, lowest agreement first,
so an admin settles the disputes before the data is pushed. Pure: the caller
reads the store (`admin_actions.review_queue`); no I/O, no Gradio.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import fmean
from typing import Any, Container, Iterable, Mapping, Sequence

from annotator import boxes, metrics
from annotator.model import Answer, AnswerValue, Final, Response
from annotator.task import Question, TaskSpec

__all__ = ["ReviewItem", "question_consensus", "record_consensus", "review_item", "review_queue"]


def question_consensus(q: Question, values: Sequence[Any], box_iou: float = boxes.DEFAULT_IOU
                       ) -> tuple[Any, list[str], float | None]:
    """(consensus, tied labels, agreement) of one question's submitted `values` on one record; a text
    question has (None, [], None). Boxes: `values` in a stable order (by user), as the consensus depends on it."""
    if q.kind == "text":
        return None, [], None
    if q.kind == "boxes":
        return boxes.consensus(values, box_iou), [], boxes.record_f1(values, box_iou)
    if q.kind == "labels":
        chosen, ties = metrics.label_set_majority(values)
        return chosen, ties, metrics.record_agreement_multi(values, q.label_names)
    agreement = metrics.record_agreement(values)
    if q.kind == "rating":
        return metrics.median(values), [], agreement
    vote = metrics.majority(values)
    return vote.label, list(vote.tied), agreement


def record_consensus(task: TaskSpec, answers: Sequence[tuple[str, Answer]], box_iou: float = boxes.DEFAULT_IOU
                     ) -> tuple[dict[str, Any], float | None]:
    """A record's consensus by question (questions nobody answered, and text, left out) and its agreement:
    the mean over its questions with two answers or more (None without any). `answers`: (user, answer)."""
    consensus: dict[str, Any] = {}
    scores = []
    for q in task.questions:
        values = [a[q.name] for _, a in sorted(answers, key=lambda ua: ua[0]) if q.name in a]
        if not values or q.kind == "text":
            continue
        consensus[q.name], _, agreement = question_consensus(q, values, box_iou)
        if agreement is not None and len(values) >= 2:
            scores.append(agreement)
    return consensus, fmean(scores) if scores else None


@dataclass(frozen=True)
class ReviewItem:
    """One record of the review queue: every submitted answer by user, the consensus, and the final if set."""
    record_id: int
    agreement: float | None                     # record_consensus; None: fewer than two answers to compare
    answers: tuple[tuple[str, Answer], ...]     # (user, answer), by user
    consensus: dict[str, Any]
    final: Final | None

    def as_dict(self) -> dict[str, Any]:
        return {"record_id": self.record_id, "agreement": self.agreement,
                "answers": [{"user": u, "answer": a} for u, a in self.answers], "consensus": self.consensus,
                "final": None if self.final is None else {"answer": self.final.answer, "admin": self.final.admin,
                                                          "at": self.final.at.isoformat()}}


def review_item(task: TaskSpec, record_id: int, answers: Sequence[tuple[str, Answer]], final: Final | None,
                box_iou: float = boxes.DEFAULT_IOU) -> ReviewItem:
    """One record for review from its submitted (user, answer) pairs and its final answer."""
    consensus, agreement = record_consensus(task, answers, box_iou)
    return ReviewItem(record_id, agreement, tuple(sorted(answers, key=lambda ua: ua[0])), consensus, final)


def review_queue(task: TaskSpec, responses: Iterable[Response], finals: Mapping[int, Final],
                 gold: Container[int] = (), *, label: str | None = None, annotator: str | None = None,
                 box_iou: float = boxes.DEFAULT_IOU) -> list[ReviewItem]:
    """The records with a submitted answer, lowest agreement first (records with one answer last, then by id).

    `label`: only records where someone gave that label (to a label, labels,
    preference or boxes question); `annotator`: only records that person
    answered. Gold records are left out: their answer is known.
    """
    labelled = {q.name for q in task.questions if q.kind in ("label", "labels", "preference", "boxes")}
    by_record: dict[int, list[tuple[str, Answer]]] = {}
    for r in responses:
        if r.status == "submitted" and r.record_id not in gold:
            by_record.setdefault(r.record_id, []).append((r.user_id, r.answer))
    items = []
    for rid, answers in by_record.items():
        if annotator and all(user != annotator for user, _ in answers):
            continue
        if label and not any(label in _labels(value) for _, a in answers for name, value in a.items()
                             if name in labelled):
            continue
        items.append(review_item(task, rid, answers, finals.get(rid), box_iou))
    items.sort(key=lambda i: (i.agreement is None, i.agreement or 0.0, i.record_id))
    return items


def _labels(value: AnswerValue) -> set[str]:
    """The labels a label, labels, preference or boxes value names."""
    if isinstance(value, list):
        return {v["label"] if isinstance(v, dict) else v for v in value}
    return {value} if isinstance(value, str) else set()
