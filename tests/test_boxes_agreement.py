"""annotator.boxes against hand-computed cases (issue 16): IoU, matching, F1 and the consensus."""

from __future__ import annotations

import pytest

from annotator.boxes import annotator_f1, clamp_bbox, consensus, iou, match, pair_f1, record_f1


def b(label: str, x: float, y: float, w: float, h: float) -> dict:
    return {"label": label, "bbox": [x, y, w, h]}


def test_iou() -> None:
    assert iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert iou([0, 0, 10, 10], [5, 0, 10, 10]) == pytest.approx(50 / 150)
    assert iou([0, 0, 10, 10], [10, 0, 10, 10]) == 0.0          # touching edges: no overlap
    assert iou([0, 0, 10, 10], [2, 2, 5, 5]) == pytest.approx(25 / 100)


def test_clamp() -> None:
    assert clamp_bbox((-5.0, 2.04, 20.0, 200.0), (10, 50)) == [0.0, 2.0, 10.0, 48.0]
    assert clamp_bbox((12.0, 2.0, 5.0, 5.0), (10, 50)) is None


def test_no_boxes() -> None:
    assert match([], []) == [] and pair_f1([], []) == 1.0          # both saw nothing: they agree
    assert pair_f1([b("car", 0, 0, 10, 10)], []) == 0.0
    assert record_f1([[], []]) == 1.0
    assert consensus([[], []]) == [] and consensus([]) == []
    assert annotator_f1({1: {"ann": [], "bob": []}}) == {"ann": 1.0, "bob": 1.0}


def test_one_person_only() -> None:
    boxes = [b("car", 0, 0, 10, 10), b("bike", 20, 20, 5, 5)]
    assert record_f1([boxes]) is None                               # nobody to agree with
    assert consensus([boxes]) == [b("car", 0.0, 0.0, 10.0, 10.0), b("bike", 20.0, 20.0, 5.0, 5.0)]
    assert annotator_f1({1: {"ann": boxes}}) == {"ann": None}


def test_labels_that_differ() -> None:
    ann, bob = [b("car", 0, 0, 10, 10)], [b("bike", 0, 0, 10, 10)]
    assert match(ann, bob) == [] and pair_f1(ann, bob) == 0.0
    assert consensus([ann, bob]) == []                              # each drawn by one of two: no majority


def test_threshold_is_inclusive_and_a_setting() -> None:
    # IoU of [0,0,10,10] and [0,0,10,5] is 50/100 = 0.5: a match at 0.5, none at 0.6
    ann, bob = [b("car", 0, 0, 10, 10)], [b("car", 0, 0, 10, 5)]
    assert match(ann, bob) == [(0, 0)] and pair_f1(ann, bob) == 1.0
    assert match(ann, bob, 0.6) == [] and pair_f1(ann, bob, 0.6) == 0.0


def test_a_box_two_people_split_into_two() -> None:
    # ann draws one box over two objects; bob one box per object. IoU(ann, each of bob's) = 1800/4000 = 0.45
    ann = [b("car", 0, 0, 100, 40)]
    bob = [b("car", 0, 0, 45, 40), b("car", 55, 0, 45, 40)]
    assert match(ann, bob) == []
    assert pair_f1(ann, bob) == 0.0
    assert consensus([ann, bob]) == []
    # at a threshold of 0.4 ann's box matches one of bob's (the first of two equal overlaps): F1 = 2*1/3
    assert len(match(ann, bob, 0.4)) == 1 and pair_f1(ann, bob, 0.4) == pytest.approx(2 / 3)


def test_one_match_each_best_first() -> None:
    # two of bob's boxes overlap ann's; only the better one (IoU 0.9) is its match
    ann = [b("car", 0, 0, 10, 10)]
    bob = [b("car", 0, 0, 10, 9), b("car", 0, 0, 10, 8)]
    assert match(ann, bob) == [(0, 0)]
    assert pair_f1(ann, bob) == pytest.approx(2 / 3)


def test_three_people_with_a_majority() -> None:
    ann = [b("car", 10, 10, 20, 20), b("dog", 50, 50, 10, 10)]
    bob = [b("car", 12, 10, 20, 20)]                                 # the car, a little right; no dog
    cid = [b("car", 10, 12, 22, 20), b("cat", 50, 50, 10, 10)]       # the car; a cat where ann saw a dog
    # pairs: ann-bob 2*1/3, ann-cid 2*1/4, bob-cid 2*1/3
    assert record_f1([ann, bob, cid]) == pytest.approx((2 / 3 + 1 / 2 + 2 / 3) / 3)
    # the car is drawn by all three: x0 median(10,12,10)=10, y0 median(10,10,12)=10,
    # x1 median(30,32,32)=32, y1 median(30,30,32)=30; dog and cat each by one of three: dropped
    assert consensus([ann, bob, cid]) == [b("car", 10.0, 10.0, 22.0, 20.0)]
    # per person, pooled over the others: ann 2*(1+1)/(3+4) = 4/7; bob 2*(1+1)/(3+3) = 2/3; cid 2*2/(4+3) = 4/7
    f1 = annotator_f1({7: {"ann": ann, "bob": bob, "cid": cid}})
    assert f1 == pytest.approx({"ann": 4 / 7, "bob": 2 / 3, "cid": 4 / 7})


def test_two_of_three_is_a_majority_and_two_of_four_is_not() -> None:
    car = b("car", 0, 0, 10, 10)
    assert consensus([[car], [car], []]) == [b("car", 0.0, 0.0, 10.0, 10.0)]
    assert consensus([[car], [car], [], []]) == []


def test_annotator_f1_pools_records() -> None:
    car = b("car", 0, 0, 10, 10)
    records = {1: {"ann": [car], "bob": [car]},                      # ann matches 1 of 2 drawn
               2: {"ann": [car], "bob": [b("car", 50, 50, 5, 5)]},   # 0 of 2
               3: {"ann": [car]}}                                   # nobody else: not counted
    assert annotator_f1(records) == {"ann": pytest.approx(2 / 4), "bob": pytest.approx(2 / 4)}


def test_box_iou_setting(tmp_path) -> None:
    from annotator.config import ConfigError, load_settings
    env = {"DATA_DIR": str(tmp_path)}
    assert load_settings(env).box_iou == 0.5
    assert load_settings({**env, "BOX_IOU": "0.7"}).box_iou == 0.7
    assert load_settings({**env, "BOX_IOU": "0.7"}).public_items()["BOX_IOU"] == "0.7"
    for bad, words in (("1.5", "from 0.05 to 1"), ("0", ">= 0.05"), ("half", "not a number")):
        with pytest.raises(ConfigError) as caught:
            load_settings({**env, "BOX_IOU": bad})
        assert "BOX_IOU" in str(caught.value) and words in str(caught.value), str(caught.value)
