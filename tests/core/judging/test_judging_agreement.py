"""Agreement figures against values worked out by hand (Krippendorff's ordinal alpha with a missing
value, pairwise exact / within one), undefined cases, the disagreement list and its resolution."""
from __future__ import annotations

from fractions import Fraction

import pytest
from library_fixtures import REER_ITEMS, add_reer

from core.judging import agreement as ag
from core.judging import queue as jq

NAN = None

# Three coders (A, B, C), five units, ordinal values 1..3; None = not judged.
#            U1 U2 U3 U4  U5
HAND = [[1, 2, 3, 1, 3],  # A
        [1, 2, 3, NAN, NAN],  # B
        [2, 2, 1, 1, NAN]]  # C
# Worked by hand (docs/judging.md shows the same sums):
# U5 has one value: not pairable, dropped. Pairable values: U1 {1,1,2}, U2 {2,2,2}, U3 {3,3,1}, U4 {1,1}: n = 11.
# Coincidences o_ck = sum over units of (ordered c-k pairs in the unit) / (m_u - 1):
#   U1 (m=3): o11 += 2/2, o12 += 2/2, o21 += 2/2      U2 (m=3): o22 += 6/2
#   U3 (m=3): o33 += 2/2, o13 += 2/2, o31 += 2/2      U4 (m=2): o11 += 2/1
#   matrix      1  2  3  | n_c
#          1 [  3  1  1 ] 5
#          2 [  1  3  0 ] 4
#          3 [  1  0  1 ] 2
# Ordinal distance delta²(c,k) = (sum_{g=c..k} n_g - (n_c + n_k)/2)²:
#   d(1,2) = (9 - 4.5)² = 20.25, d(2,3) = (6 - 3)² = 9, d(1,3) = (11 - 3.5)² = 56.25
# D_o = (1/n) sum_{c!=k} o_ck d = (2*1*20.25 + 2*1*56.25 + 2*0*9) / 11 = 153/11
# D_e = 1/(n(n-1)) sum_{c!=k} n_c n_k d = (2*5*4*20.25 + 2*5*2*56.25 + 2*4*2*9) / 110 = 2079/110
# alpha = 1 - D_o/D_e = 1 - 1530/2079 = 549/2079 = 61/231 = 0.264069...
HAND_ALPHA = Fraction(61, 231)
# Pairwise (shared units): A-B U1..U3: exact 3/3, within 1: 3/3; A-C U1..U4: (1,2)(2,2)(3,1)(1,1): exact 2/4,
# within 1: 3/4; B-C U1..U3: exact 1/3, within 1: 2/3. Pooled: exact 6/10, within 1: 8/10.


def test_alpha_matches_the_hand_computed_coincidence_matrix():
    a = ag.alpha_ordinal(HAND)
    assert a.value == pytest.approx(float(HAND_ALPHA), abs=1e-12)
    assert (a.units, a.values) == (4, 11)


def test_pairwise_matches_hand_counts():
    values = {name: {u: v for u, v in enumerate(row) if v is not None} for name, row in zip("ABC", HAND)}
    pairs, pooled = ag.pairwise(values)
    got = {(p["a"], p["b"]): (p["n"], p["exact"], p["within1"]) for p in pairs}
    assert got == {("A", "B"): (3, 1.0, 1.0), ("A", "C"): (4, 0.5, 0.75), ("B", "C"): (3, pytest.approx(1 / 3),
                                                                                        pytest.approx(2 / 3))}
    assert pooled == {"n": 10, "exact": 0.6, "within1": 0.8}


def test_alpha_undefined_cases_say_why():
    assert ag.alpha_ordinal([[1, 2], [NAN, NAN]]).value is None  # no unit with two values
    same = ag.alpha_ordinal([[4, 4], [4, 4]])
    assert same.value is None and "same" in same.why
    assert ag.alpha_ordinal([[1, 2, 3], [1, 2, 3]]).value == pytest.approx(1.0)


def _queue_from_hand(store):
    """The HAND table as a queue: units are drafts, the overall score and criterion "clear" both carry
    the hand value; criterion "vivid" is 5 for everyone (no variation)."""
    jq.create_queue(store, "h", ["clear", "vivid"], overlap=3, open_items=True)  # judged by id
    refs = [f"traj:{add_reer(store, f'{REER_ITEMS[0][0]} ({i})', *REER_ITEMS[0][1:])}" for i in range(5)]
    items, _ = jq.add_items(store, "h", refs)
    for name, row in zip(("A", "B", "C"), HAND):
        for item, v in zip(items, row):
            if v is not None:
                jq.submit(store, item, name, {"clear": v, "vivid": 5}, overall=v)
    return items


def test_report_from_the_store_equals_the_hand_values(store):
    _queue_from_hand(store)
    rep = ag.report(store, "h")
    clear, vivid = rep["criteria"]
    assert rep["annotators"] == ["A", "B", "C"] and rep["items"] == 5
    assert clear["alpha"] == pytest.approx(float(HAND_ALPHA)) == rep["overall"]["alpha"]
    assert (clear["exact"], clear["within1"]) == (0.6, 0.8)
    assert vivid["alpha"] is None and vivid["exact"] == 1.0
    lines = "\n".join(ag.card_lines(rep))
    assert "| overall | 0.264 | 0.600 | 0.800 | 4 |" in lines


def test_disagreements_widest_first_and_resolution_is_stored(store):
    items = _queue_from_hand(store)
    rows = ag.disagreements(store, "h", min_spread=1)
    assert [(r["item_id"], r["spread"]) for r in rows] == [(items[2], 2), (items[0], 1)]
    assert rows[0]["scores"] == {"A": 3, "B": 3, "C": 1} and not rows[0]["resolved"]
    assert ag.disagreements(store, "h") == []  # default: a third of the 1-10 scale (3 points)
    with pytest.raises(jq.JudgingError, match="overall score .* or a note"):
        ag.resolve(store, items[2], "lead")
    ag.resolve(store, items[2], "lead", note="C misread the task")
    ag.resolve(store, items[2], "lead", overall=3, scores={"clear": 3})
    again = ag.disagreements(store, "h", min_spread=1)[0]
    assert again["resolved"] and [r["resolver"] for r in again["resolutions"]] == ["lead", "lead"]
    assert again["resolutions"][1]["scores"] == {"clear": 3, "vivid": None}
