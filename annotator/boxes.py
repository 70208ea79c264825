"""Boxes drawn on an image: geometry, and agreement between the people who drew them.

Pure: no I/O. A box is `{"label": name, "bbox": [x, y, w, h]}` in the image's
original pixels (x, y the top-left corner), the COCO form the answers, the
pre-labels and the export use. Two people's boxes match when they carry the
same label and overlap by at least the IoU threshold (BOX_IOU, default 0.5),
each box matching at most one (the best overlaps first). From the matches:
a pair's F1 (2 x matched / boxes of both), a record's agreement (the mean F1
of its pairs), a person's F1 against the others, and the record's consensus
(boxes a majority of its annotators drew, merged by their median corners).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any, Hashable

__all__ = ["DEFAULT_IOU", "annotator_f1", "clamp_bbox", "consensus", "iou", "match", "pair_f1", "record_f1"]

DEFAULT_IOU = 0.5
Box = Mapping[str, Any]  # {"label": str, "bbox": [x, y, w, h]}, more keys ignored


def clamp_bbox(bbox: tuple[float, float, float, float], size: tuple[int, int]) -> list[float] | None:
    """[x, y, w, h] cut to the image and rounded to 0.1 px; None when nothing of it is left inside."""
    x, y, w, h = bbox
    width, height = size
    x0, y0 = min(max(x, 0.0), width), min(max(y, 0.0), height)
    x1, y1 = min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)
    x0, y0, x1, y1 = (round(v, 1) for v in (x0, y0, x1, y1))
    if x1 - x0 < 0.1 or y1 - y0 < 0.1:
        return None
    return [x0, y0, round(x1 - x0, 1), round(y1 - y0, 1)]


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two [x, y, w, h] boxes (0 when they do not overlap)."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def _pairs(a: Sequence[Box], b: Sequence[Sequence[float] | None], labels_b: Sequence[str],
           threshold: float) -> list[tuple[int, int]]:
    """One-to-one matches (index in a, index in b) of the same label and IoU >= threshold, best first."""
    candidates = sorted(((iou(box["bbox"], other), i, j)
                         for i, box in enumerate(a) for j, other in enumerate(b)
                         if other is not None and box["label"] == labels_b[j]), reverse=True)
    used_a: set[int] = set()
    used_b: set[int] = set()
    out = []
    for overlap, i, j in candidates:
        if overlap < threshold:
            break
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            out.append((i, j))
    return out


def match(a: Sequence[Box], b: Sequence[Box], threshold: float = DEFAULT_IOU) -> list[tuple[int, int]]:
    """The boxes of `a` and `b` that match: pairs of indexes, each box in at most one pair."""
    return _pairs(a, [box["bbox"] for box in b], [box["label"] for box in b], threshold)


def pair_f1(a: Sequence[Box], b: Sequence[Box], threshold: float = DEFAULT_IOU) -> float:
    """F1 of one person's boxes against another's: 2 x matched / (boxes of a + boxes of b); two people who
    both drew nothing agree (1.0)."""
    total = len(a) + len(b)
    return 2 * len(match(a, b, threshold)) / total if total else 1.0


def record_f1(answers: Sequence[Sequence[Box]], threshold: float = DEFAULT_IOU) -> float | None:
    """A record's agreement: the mean F1 over every pair of its answers; None with fewer than two."""
    scores = [pair_f1(a, b, threshold) for a, b in combinations(answers, 2)]
    return sum(scores) / len(scores) if scores else None


def annotator_f1(records: Mapping[Hashable, Mapping[str, Sequence[Box]]],
                 threshold: float = DEFAULT_IOU) -> dict[str, float | None]:
    """Each person's F1 against the others, pooled over the records they share with someone: 2 x their
    matched boxes / (their boxes + the others' boxes), one term per other person; None when they share
    no record (1.0 when everyone they share with drew nothing, as they did)."""
    matched: dict[str, int] = {}
    drawn: dict[str, int] = {}
    for by_user in records.values():
        for user, boxes in by_user.items():
            matched.setdefault(user, 0)
            drawn.setdefault(user, 0)
            for other, theirs in by_user.items():
                if other != user:
                    matched[user] += len(match(boxes, theirs, threshold))
                    drawn[user] += len(boxes) + len(theirs)
    shared = {user for by_user in records.values() if len(by_user) > 1 for user in by_user}
    return {user: (2 * matched[user] / drawn[user] if drawn[user] else 1.0) if user in shared else None
            for user in matched}


def consensus(answers: Sequence[Sequence[Box]], threshold: float = DEFAULT_IOU) -> list[dict[str, Any]]:
    """The boxes a majority (more than half) of the answers drew: each answer's boxes are matched to the
    groups formed so far (same label, IoU with the group's median box >= threshold, one box per answer
    and group, best overlaps first); a group kept becomes one box at the median of its corners."""
    groups: list[tuple[str, list[list[float]]]] = []  # label, the corners [x0, y0, x1, y1] of its boxes
    for boxes in answers:
        refs = [_as_bbox(_median(corners)) for _, corners in groups]
        pairs = _pairs(boxes, refs, [label for label, _ in groups], threshold)
        joined = {i for i, _ in pairs}
        for i, j in pairs:
            groups[j][1].append(_corners(boxes[i]["bbox"]))
        groups += [(box["label"], [_corners(box["bbox"])]) for i, box in enumerate(boxes) if i not in joined]
    kept = [(label, _median(corners)) for label, corners in groups if len(corners) * 2 > len(answers)]
    return [{"label": label, "bbox": [round(v, 1) for v in _as_bbox(c)]} for label, c in kept]


def _corners(bbox: Sequence[float]) -> list[float]:
    return [bbox[0], bbox[1], bbox[0] + bbox[2], bbox[1] + bbox[3]]


def _median(corners: list[list[float]]) -> list[float]:
    return [statistics.median(c[k] for c in corners) for k in range(4)]


def _as_bbox(c: Sequence[float]) -> list[float]:
    return [c[0], c[1], c[2] - c[0], c[3] - c[1]]
