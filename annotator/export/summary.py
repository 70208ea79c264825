"""The totals of one export, filled while its tables are built: what the card says.

Agreement is accumulated record by record (`AlphaAccumulator`), so a summary
of any size of store takes memory per label, never per record.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Sequence

from annotator import metrics


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


@dataclass
class ExportSummary:
    """Totals of one export, filled while its tables are built; the card is written from it."""
    records: int = 0
    submitted: int = 0
    skipped: int = 0
    status: Counter[str] = field(default_factory=Counter)
    answer_counts: Counter[str] = field(default_factory=Counter)
    majority_counts: Counter[str] = field(default_factory=Counter)
    ties: int = 0
    annotators: set[str] = field(default_factory=set)
    missing_images: int = 0
    alpha: metrics.AgreementResult | None = None
    alpha_per_label: dict[str, metrics.AgreementResult] = field(default_factory=dict)
    created_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    @property
    def responses(self) -> int:
        return self.submitted + self.skipped

