"""The totals of one export, filled while its tables are built: what the card says.

Agreement is accumulated record by record (`AlphaAccumulator`,
`OrdinalAccumulator`), so a summary of any size of store takes memory per
label or rating value, never per record.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Sequence

import numpy as np

from annotator import metrics
from annotator.export.gold import GoldSummary


class AlphaAccumulator:
    """Krippendorff's nominal alpha, accumulated one record at a time.

    The same formula as `metrics.krippendorff_alpha_nominal` (Krippendorff
    2011), whose input would hold every record's answers in memory at once;
    here only per-label sums are kept: n, the coincidence diagonal and the
    marginals are sums over records. Records with fewer than two answers are
    not pairable and are left out, as there.
    """

    def __init__(self) -> None:
        self.units = 0
        self.n = 0
        self.diagonal: Counter[Any] = Counter()
        self.marginals: Counter[Any] = Counter()

    def add(self, values: Sequence[Any]) -> None:
        present = [v for v in values if v is not None]
        m = len(present)
        if m < 2:
            return
        self.units += 1
        self.n += m
        for value, k in Counter(present).items():
            self.diagonal[value] += k * (k - 1) / (m - 1)
            self.marginals[value] += k

    def result(self) -> metrics.AgreementResult:
        if not self.units:
            return metrics.AgreementResult(value=None, n_records=0, n_answers=0)
        n = float(self.n)
        observed = n - sum(self.diagonal.values())
        expected = n * n - sum(float(c) * c for c in self.marginals.values())
        if expected <= 0:
            return metrics.AgreementResult(value=None, n_records=self.units, n_answers=self.n)
        return metrics.AgreementResult(value=1.0 - (n - 1.0) * observed / expected,
                                       n_records=self.units, n_answers=self.n)


class OrdinalAccumulator:
    """Krippendorff's ordinal alpha (ratings), accumulated one record at a time.

    Keeps the coincidence sums per pair of values (a scale has at most ten),
    which is all `metrics.ordinal_alpha_from_coincidences` needs.
    """

    def __init__(self) -> None:
        self.units = 0
        self.coincidences: Counter[tuple[int, int]] = Counter()

    def add(self, values: Sequence[int | None]) -> None:
        counts = Counter(v for v in values if v is not None)
        m = sum(counts.values())
        if m < 2:
            return
        self.units += 1
        for c, n_c in counts.items():
            for k, n_k in counts.items():
                self.coincidences[c, k] += n_c * (n_k - (c == k)) / (m - 1)

    def result(self) -> metrics.AgreementResult:
        values = sorted({c for c, _ in self.coincidences})
        index = {v: i for i, v in enumerate(values)}
        matrix = np.zeros((len(values), len(values)))
        for (c, k), o in self.coincidences.items():
            matrix[index[c], index[k]] = o
        return metrics.ordinal_alpha_from_coincidences(values, matrix, self.units)


@dataclass
class QuestionSummary:
    """One question's totals in an export.

    label / labels: `answer_counts` per label, `majority_counts` the records
    whose consensus holds the label, `ties` the records with a tie stated.
    rating: `answer_counts` per value. text: `chars` in all answers. `alpha`:
    nominal (label) or ordinal (rating); `alpha_per_label` for labels. boxes:
    `answer_counts` / `majority_counts` count boxes per label (drawn / in the
    consensus), `f1_total` sums the F1 of the `f1_records` records with two
    or more answers.
    """
    name: str
    kind: str
    answers: int = 0
    answer_counts: Counter[str] = field(default_factory=Counter)
    majority_counts: Counter[str] = field(default_factory=Counter)
    ties: int = 0
    chars: int = 0
    alpha: metrics.AgreementResult | None = None
    alpha_per_label: dict[str, metrics.AgreementResult] = field(default_factory=dict)
    f1_total: float = 0.0
    f1_records: int = 0

    @property
    def mean_chars(self) -> float | None:
        return self.chars / self.answers if self.answers else None

    @property
    def mean_f1(self) -> float | None:
        return self.f1_total / self.f1_records if self.f1_records else None


@dataclass
class ConfigSummary:
    """One ready-to-train config's totals in an export: its rows, and what was left out and why."""
    name: str
    question: str
    kind: str
    holds: str                          # the card's words for one row
    rows: int = 0
    left_out: Counter[str] = field(default_factory=Counter)


@dataclass
class ExportSummary:
    """Totals of one export, filled while its tables are built; the card is written from it."""
    records: int = 0
    submitted: int = 0
    skipped: int = 0
    status: Counter[str] = field(default_factory=Counter)
    questions: dict[str, QuestionSummary] = field(default_factory=dict)  # in task order
    configs: dict[str, ConfigSummary] = field(default_factory=dict)      # the ready-to-train ones, if built
    annotators: set[str] = field(default_factory=set)
    missing_images: int = 0  # images (any of a record's) whose file could not be read
    adjudicated: int = 0     # records with a final answer an admin set (issue 17)
    gold: GoldSummary | None = None     # when the task has gold records (issue 17): left out of all the above
    created_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    @property
    def responses(self) -> int:
        return self.submitted + self.skipped

