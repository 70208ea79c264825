"""Agreement statistics and latency percentiles for the annotator app.

Everything here is a pure function of its arguments (no I/O, no project
imports) so the statistics can be tested against published worked examples
and reused by any view.  The one stateful piece, ``LatencyWindow``, is a
small lock-protected ring buffer for the health view.

Conventions
-----------
* A statistic that is not computable is reported as ``None`` rather than as
  0.0 or NaN, so a view can say "not enough data" instead of showing a
  misleading number.
* ``None`` entries inside an answer list are treated as missing values and
  skipped, so callers may pass sparse data without cleaning it first.
"""

from __future__ import annotations

import math
import threading
from collections import Counter, deque
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any
from dataclasses import dataclass

import numpy as np

__all__ = [
    "AgreementResult",
    "LatencyWindow",
    "Majority",
    "annotator_agreement",
    "annotator_agreement_ordinal",
    "fleiss_kappa",
    "krippendorff_alpha_multilabel",
    "krippendorff_alpha_nominal",
    "krippendorff_alpha_ordinal",
    "label_set_majority",
    "ordinal_alpha_from_coincidences",
    "majority",
    "median",
    "percentiles",
    "record_agreement",
    "record_agreement_multi",
]


# --------------------------------------------------------------------------
# Result types
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Majority:
    """Outcome of a majority vote; ties are stated, never broken silently.

    ``label`` is the unique most frequent label, or ``None`` when there is no
    answer or when several labels share the top count.  ``tied`` lists those
    labels (sorted) on a tie and is empty otherwise.  ``count`` is the top
    count and ``total`` the number of answers counted.
    """

    label: str | None
    tied: tuple[str, ...]
    count: int
    total: int

    @property
    def is_tie(self) -> bool:
        """True when two or more labels share the top count."""
        return len(self.tied) > 1


@dataclass(frozen=True)
class AgreementResult:
    """An agreement coefficient together with the amount of data behind it.

    ``value`` is ``None`` when the coefficient is undefined for the data.
    ``n_records`` / ``n_answers`` say how many records (units) and answers
    actually entered the computation, so a value is never shown without its
    sample size.
    """

    value: float | None
    n_records: int
    n_answers: int


# --------------------------------------------------------------------------
# Per-record statistics
# --------------------------------------------------------------------------


def _present(values: Sequence) -> list:
    """Drop missing (``None``) values."""
    return [v for v in values if v is not None]


def majority(answers: Sequence[str]) -> Majority:
    """Most frequent label of a record, reporting ties instead of hiding them.

    Ties are not broken (e.g. by first answer) because that would make the
    consensus depend on arrival order; the caller decides what a tie means.
    """
    counts = Counter(_present(answers))
    total = sum(counts.values())
    if not counts:
        return Majority(label=None, tied=(), count=0, total=0)
    top = max(counts.values())
    leaders = sorted(label for label, c in counts.items() if c == top)
    if len(leaders) == 1:
        return Majority(label=leaders[0], tied=(), count=top, total=total)
    return Majority(label=None, tied=tuple(leaders), count=top, total=total)


def label_set_majority(answers: Sequence[Sequence[str]]) -> tuple[list[str], list[str]]:
    """(labels chosen by more than half of the answers, labels chosen by exactly half), each sorted.

    The consensus of a multi-label record, label by label; a label at exactly
    half is a tie, stated rather than decided.
    """
    sets = [frozenset(a) for a in answers if a is not None]
    chosen = Counter(label for s in sets for label in s)
    half = len(sets) / 2
    return (sorted(label for label, c in chosen.items() if c > half),
            sorted(label for label, c in chosen.items() if c == half))


def median(values: Sequence[float]) -> float | None:
    """The median of the present values (the mean of the two middle ones for an even count); None when empty.

    The consensus of a rating: unlike the mean it is not pulled by one extreme answer.
    """
    present = sorted(_present(values))
    if not present:
        return None
    mid = len(present) // 2
    return float(present[mid]) if len(present) % 2 else (present[mid - 1] + present[mid]) / 2


def _pair_agreement(counts: Sequence[int]) -> float | None:
    """Share of agreeing ordered pairs: sum n_k(n_k-1) / (n(n-1))."""
    n = sum(counts)
    if n < 2:
        return None
    return sum(c * (c - 1) for c in counts) / (n * (n - 1))


def record_agreement(answers: Sequence[str]) -> float | None:
    """Observed agreement of one record (fraction of agreeing answer pairs).

    This is the per-subject P_i of Fleiss' kappa; it is ``None`` with fewer
    than two answers because agreement needs at least one pair.
    """
    return _pair_agreement(list(Counter(_present(answers)).values()))


def record_agreement_multi(
    answers: Sequence[Sequence[str]], labels: Sequence[str]
) -> float | None:
    """Observed agreement of one multi-label record.

    Each label is treated as a binary present/absent answer; the result is
    the mean over ``labels`` of the per-label pair agreement, so agreeing
    that a label is absent counts as agreement too.  Labels outside
    ``labels`` are ignored.  ``None`` with fewer than two answers or no
    labels.
    """
    sets = [frozenset(a) for a in answers if a is not None]
    if len(sets) < 2 or not labels:
        return None
    per_label = []
    for label in dict.fromkeys(labels):  # dedupe, keep order
        yes = sum(1 for s in sets if label in s)
        per_label.append(_pair_agreement([yes, len(sets) - yes]))
    return float(np.mean(per_label))


# --------------------------------------------------------------------------
# Krippendorff's alpha (nominal)
# --------------------------------------------------------------------------


def _count_matrix(units: Mapping[Hashable, Sequence]) -> tuple[np.ndarray, list]:
    """Units x categories counts for units with >= 2 (pairable) values, and the category of each column."""
    rows: list[Counter] = []
    categories: dict = {}
    for values in units.values():
        present = _present(values)
        if len(present) < 2:
            continue
        counts = Counter(present)
        for value in counts:
            categories.setdefault(value, len(categories))
        rows.append(counts)
    matrix = np.zeros((len(rows), len(categories)), dtype=np.float64)
    for i, counts in enumerate(rows):
        for value, c in counts.items():
            matrix[i, categories[value]] = c
    return matrix, list(categories)


def _alpha_from_counts(matrix: np.ndarray) -> AgreementResult:
    """Nominal alpha from a units x categories count matrix.

    With the coincidence matrix o_ck = sum_u n_uc (n_uk - [c=k]) / (m_u - 1)
    and marginals n_c, the nominal metric gives
        alpha = 1 - (n - 1) * (n - sum_c o_cc) / (n^2 - sum_c n_c^2)
    (Krippendorff 2011, "Computing Krippendorff's Alpha-Reliability").
    """
    n_units = int(matrix.shape[0])
    if n_units == 0:
        return AgreementResult(value=None, n_records=0, n_answers=0)
    m_u = matrix.sum(axis=1)  # pairable values per unit, all >= 2
    n = float(m_u.sum())
    o_diag = (matrix * (matrix - 1) / (m_u - 1)[:, None]).sum(axis=0)
    n_c = matrix.sum(axis=0)  # marginals of the coincidence matrix
    observed = n - float(o_diag.sum())  # sum of off-diagonal coincidences
    expected = n * n - float((n_c * n_c).sum())  # sum_{c != k} n_c n_k
    result_n = int(round(n))
    if expected <= 0:
        # A single value used throughout: expected disagreement D_e is 0 and
        # alpha = 1 - D_o/D_e is undefined (Krippendorff), not 1.
        return AgreementResult(value=None, n_records=n_units, n_answers=result_n)
    alpha = 1.0 - (n - 1.0) * observed / expected
    return AgreementResult(value=float(alpha), n_records=n_units, n_answers=result_n)


def krippendorff_alpha_nominal(
    units: Mapping[Hashable, Sequence[str]],
) -> AgreementResult:
    """Krippendorff's alpha for nominal labels, tolerant of missing answers.

    Alpha is used because records are labelled by varying subsets of users:
    it needs neither a fixed set of coders nor complete data.  Only units
    with at least two values are pairable; the rest are ignored and not
    counted in ``n_records``/``n_answers``.  ``value`` is ``None`` when no
    unit is pairable or when expected disagreement is zero (all pairable
    values identical), where alpha is undefined.
    """
    return _alpha_from_counts(_count_matrix(units)[0])


def krippendorff_alpha_ordinal(units: Mapping[Hashable, Sequence[int]]) -> AgreementResult:
    """Krippendorff's alpha for ordinal values (ratings), tolerant of missing answers.

    A rating of 4 against 5 is a smaller disagreement than 1 against 5, which
    nominal alpha cannot see. Pairable units, ``None`` and ``n_records`` /
    ``n_answers`` as in krippendorff_alpha_nominal.
    """
    matrix, categories = _count_matrix(units)
    if matrix.shape[0] == 0:
        return AgreementResult(value=None, n_records=0, n_answers=0)
    per_unit = matrix / (matrix.sum(axis=1) - 1)[:, None]
    coincidence = matrix.T @ per_unit - np.diag(per_unit.sum(axis=0))
    return ordinal_alpha_from_coincidences(categories, coincidence, int(matrix.shape[0]))


def ordinal_alpha_from_coincidences(values: Sequence[float], coincidence: np.ndarray,
                                    n_units: int) -> AgreementResult:
    """Ordinal alpha from the coincidence matrix o_ck of `values` (in any order) over `n_units` pairable units.

    With the values ranked and the marginals n_g of o, the ordinal metric is
        delta_ck^2 = (sum_{g=c..k} n_g - (n_c + n_k) / 2)^2
    and alpha = 1 - (n - 1) * sum o_ck delta_ck^2 / sum n_c n_k delta_ck^2
    (Krippendorff 2011). Also for callers that add the coincidences up unit by
    unit instead of holding every unit (the export's summary).
    """
    order = sorted(range(len(values)), key=lambda i: values[i])
    o = coincidence[np.ix_(order, order)]
    n_g = o.sum(axis=1)
    n = float(n_g.sum())
    if n_units == 0:
        return AgreementResult(value=None, n_records=0, n_answers=0)
    cumulative = np.concatenate(([0.0], np.cumsum(n_g)))
    rank = np.arange(len(n_g))
    lo, hi = np.minimum.outer(rank, rank), np.maximum.outer(rank, rank)
    delta2 = (cumulative[hi + 1] - cumulative[lo] - (n_g[:, None] + n_g[None, :]) / 2) ** 2
    expected = float((np.outer(n_g, n_g) * delta2).sum())
    if expected <= 0:
        return AgreementResult(value=None, n_records=n_units, n_answers=int(round(n)))
    alpha = 1.0 - (n - 1.0) * float((o * delta2).sum()) / expected
    return AgreementResult(value=float(alpha), n_records=n_units, n_answers=int(round(n)))


def krippendorff_alpha_multilabel(
    units: Mapping[Hashable, Sequence[Sequence[str]]], labels: Sequence[str]
) -> dict[str, AgreementResult]:
    """Per-label alpha for multi-label answers.

    Each answer (one user's label set on a record) becomes one binary
    present/absent value per label, and nominal alpha is computed per label,
    because set-valued answers have no single nominal category and
    per-label reliability is what tells which label definitions are unclear.
    A label nobody (or everybody) used has zero expected disagreement and
    thus ``value=None``.
    """
    result: dict[str, AgreementResult] = {}
    for label in dict.fromkeys(labels):
        binary = {
            key: [label in frozenset(a) for a in answers if a is not None]
            for key, answers in units.items()
        }
        result[label] = krippendorff_alpha_nominal(binary)
    return result


# --------------------------------------------------------------------------
# Fleiss' kappa
# --------------------------------------------------------------------------


def fleiss_kappa(units: Mapping[Hashable, Sequence[str]]) -> AgreementResult:
    """Fleiss' kappa over units with at least two answers.

    Kept alongside alpha because it is the figure many users know.  Fleiss'
    formula assumes the same number of raters per unit, so if the eligible
    units differ in answer count ``value`` is ``None`` (use alpha instead)
    while ``n_records``/``n_answers`` still describe the data.  Categories
    are all labels seen.  ``value`` is also ``None`` with no eligible unit
    or when chance agreement is 1 (a single category used throughout).
    """
    matrix = _count_matrix(units)[0]
    n_units = int(matrix.shape[0])
    raters = matrix.sum(axis=1)
    n_answers = int(round(float(raters.sum())))
    if n_units == 0 or np.any(raters != raters[0]):
        return AgreementResult(value=None, n_records=n_units, n_answers=n_answers)
    m = float(raters[0])
    p_i = ((matrix * matrix).sum(axis=1) - m) / (m * (m - 1))
    p_bar = float(p_i.mean())
    p_j = matrix.sum(axis=0) / (n_units * m)
    p_e = float((p_j * p_j).sum())
    if p_e >= 1.0:
        return AgreementResult(value=None, n_records=n_units, n_answers=n_answers)
    kappa = (p_bar - p_e) / (1.0 - p_e)
    return AgreementResult(value=float(kappa), n_records=n_units, n_answers=n_answers)


# --------------------------------------------------------------------------
# Per-annotator agreement
# --------------------------------------------------------------------------


def annotator_agreement(
    units: Mapping[Hashable, Mapping[str, str]],
) -> dict[str, AgreementResult]:
    """How often each annotator agrees with the other annotators' majority.

    For every record where the annotator answered and at least one other
    annotator answered, the annotator's label is compared with the majority
    of the *others* (leaving the annotator out so they cannot vote for
    themselves).  Tie choice: if the others are tied, it counts as agreement
    when the annotator's label is one of the tied labels (it then matches a
    plurality answer and no other answer was more popular), disagreement
    otherwise.

    ``value`` = agreements / comparisons (``None`` with no comparison),
    ``n_records`` = comparisons, ``n_answers`` = all answers the annotator
    gave, compared or not.
    """
    return _agreement_with_others(units, _matches_majority)


def _matches_majority(label: Hashable, others: list) -> bool:
    vote = majority(others)
    return vote.label == label or label in vote.tied


def annotator_agreement_ordinal(
    units: Mapping[Hashable, Mapping[str, int]],
) -> dict[str, AgreementResult]:
    """How often each annotator's rating matches the median of the others' ratings on a record.

    As annotator_agreement, leaving the annotator out. A median between two
    values (an even number of others) is matched by either of them, so a
    rating that sits at the others' centre always counts as agreement.
    """
    return _agreement_with_others(units, _matches_median)


def _matches_median(value: int, others: list) -> bool:
    centre = median(others)
    return centre is not None and math.floor(centre) <= value <= math.ceil(centre)


def _agreement_with_others(units: Mapping[Hashable, Mapping[str, Any]],
                           matches: Callable[[Any, list], bool]) -> dict[str, AgreementResult]:
    """Per annotator: the share of records where `matches(their answer, the others' answers)`, over the
    records where someone else answered too (see annotator_agreement for the counts)."""
    agree: Counter = Counter()
    compared: Counter = Counter()
    answered: Counter = Counter()
    for answers in units.values():
        present = {who: value for who, value in answers.items() if value is not None}
        for who, value in present.items():
            answered[who] += 1
            others = [v for other, v in present.items() if other != who]
            if not others:
                continue
            compared[who] += 1
            if matches(value, others):
                agree[who] += 1
    return {
        who: AgreementResult(
            value=(agree[who] / compared[who]) if compared[who] else None,
            n_records=compared[who],
            n_answers=answered[who],
        )
        for who in sorted(answered)
    }


# --------------------------------------------------------------------------
# Latency percentiles
# --------------------------------------------------------------------------


def _percentile_key(q: float) -> str:
    """'p50', 'p95', 'p99.9' ..."""
    return f"p{q:g}"


def percentiles(
    samples: Sequence[float], qs: Sequence[float] = (50, 95, 99)
) -> dict[str, float | None]:
    """Nearest-rank percentiles, keyed ``"p50"``, ``"p95"``, ``"p99"``...

    Nearest-rank (the ceil(q/100 * n)-th smallest sample, q=0 giving the
    minimum) is used rather than interpolation so that every reported
    latency is one that was actually observed and a tail percentile is
    never pulled down by averaging with faster samples.  With no samples
    every value is ``None``.  Raises ``ValueError`` for q outside [0, 100]
    or NaN samples.
    """
    for q in qs:
        if not 0 <= q <= 100:
            raise ValueError(f"percentile {q!r} outside [0, 100]")
    data = sorted(float(s) for s in samples)
    if any(math.isnan(s) for s in data):
        raise ValueError("NaN sample")
    n = len(data)
    out: dict[str, float | None] = {}
    for q in qs:
        if n == 0:
            out[_percentile_key(q)] = None
            continue
        # Smallest rank k with 100*k >= q*n, guarded against float rounding.
        target = q * n
        rank = math.ceil(target / 100)
        if 100 * rank < target:
            rank += 1
        elif rank > 0 and 100 * (rank - 1) >= target:
            rank -= 1
        rank = max(1, rank)
        out[_percentile_key(q)] = data[min(rank, n) - 1]
    return out


class LatencyWindow:
    """Thread-safe ring buffer of the most recent latencies (seconds).

    Bounded so the health view reflects recent behaviour and memory stays
    constant; locked because click handlers and the commit thread add
    samples concurrently with the health view reading them.
    """

    def __init__(self, maxlen: int = 2048) -> None:
        if maxlen < 1:
            raise ValueError("maxlen must be >= 1")
        self._samples: deque[float] = deque(maxlen=maxlen)
        self._lock = threading.Lock()

    @property
    def maxlen(self) -> int:
        """Capacity of the window."""
        return self._samples.maxlen or 0

    def add(self, seconds: float) -> None:
        """Record one latency; non-finite values are dropped.

        Dropping instead of raising keeps a bad timer reading from breaking
        the request path that records it.
        """
        value = float(seconds)
        if not math.isfinite(value):
            return
        with self._lock:
            self._samples.append(value)

    @property
    def count(self) -> int:
        """Number of samples currently in the window."""
        with self._lock:
            return len(self._samples)

    def snapshot(self) -> list[float]:
        """Copy of the samples in the window, oldest first."""
        with self._lock:
            return list(self._samples)

    def percentiles(
        self, qs: Sequence[float] = (50, 95, 99)
    ) -> dict[str, float | None]:
        """Nearest-rank percentiles of the window (see ``percentiles``)."""
        return percentiles(self.snapshot(), qs)
