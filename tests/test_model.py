"""The shared rules of model.py: record status and hand-out order."""

from __future__ import annotations

from annotator.model import hand_out_order, record_status


def test_record_status_classes() -> None:
    assert record_status(2, 2) == "complete"
    assert record_status(3, 2) == "complete"  # late answers on expired leases count too
    assert record_status(1, 2) == "partial"
    assert record_status(1, 2, skipped=4) == "partial"
    assert record_status(0, 2) == "untouched"
    assert record_status(0, 2, skipped=1) == "skipped"  # only when the caller tells skips apart


def test_hand_out_order_is_dataset_order_or_a_seeded_shuffle() -> None:
    ids = list(range(1, 101))
    assert hand_out_order(ids, "sequential", 7) == ids
    shuffled = hand_out_order(ids, "shuffle", 7)
    assert shuffled == hand_out_order(ids, "shuffle", 7) != ids
    assert sorted(shuffled) == ids and ids == list(range(1, 101))  # the input is left alone
