"""Metrics against values worked out by hand, plus properties that must hold for any input."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minipelt.data.glue import get_task
from minipelt.data.metrics import (
    accuracy,
    average_ranks,
    compute_metrics,
    f1,
    matthews_corrcoef,
    pearson,
    spearman,
)

# preds  1 1 0 0 1 0
# labels 1 0 0 0 1 1   -> TP 2, FP 1, TN 2, FN 1
PREDS = np.array([1, 1, 0, 0, 1, 0])
LABELS = np.array([1, 0, 0, 0, 1, 1])


def test_binary_metrics_by_hand():
    assert accuracy(PREDS, LABELS) == pytest.approx(4 / 6)
    assert f1(PREDS, LABELS) == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))  # 2/3
    # (TP TN - FP FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (4 - 1) / sqrt(3^4) = 1/3
    assert matthews_corrcoef(PREDS, LABELS) == pytest.approx(1 / 3)


def test_multiclass_mcc_by_hand():
    # c = 4 correct of s = 6; per-class true t = predicted p = (2, 2, 2)
    # (c s - p.t) / sqrt((s^2 - p.p)(s^2 - t.t)) = (24 - 12) / sqrt(24 * 24) = 0.5
    assert matthews_corrcoef([0, 2, 1, 0, 1, 2], [0, 1, 2, 0, 1, 2]) == pytest.approx(0.5)


def test_correlations_by_hand():
    # centred x (-1, 0, 1), y (-5/3, -2/3, 7/3): r = 4 / sqrt(2 * 78/9) = 12 / sqrt(156)
    assert pearson([1, 2, 3], [1, 2, 5]) == pytest.approx(12 / math.sqrt(156))
    # ranks (1, 2.5, 2.5, 4) and (1, 3, 2, 4): centred dot 4.5, norms^2 4.5 and 5 -> sqrt(0.9)
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(math.sqrt(0.9))
    np.testing.assert_array_equal(average_ranks([5, 1, 5, 3]), [3.5, 1, 3.5, 2])


def test_degenerate_inputs_give_zero_not_nan():
    assert matthews_corrcoef([1, 1, 1], [0, 1, 1]) == 0.0
    assert pearson([0.3, 0.3, 0.3], [1, 2, 3]) == 0.0
    assert spearman([1, 2, 3], [4, 4, 4]) == 0.0
    assert f1([0, 0], [0, 0]) == 0.0


@pytest.mark.parametrize(
    "predictions, labels, message",
    [
        ([1, 2], [1], "2 predictions but 1 labels"),
        ([], [], "zero examples"),
        ([[0.1, 0.9]], [1], "argmax"),
        ([np.nan, 1.0], [1.0, 2.0], "diverged"),
    ],
)
def test_bad_inputs_are_clear_errors(predictions, labels, message):
    with pytest.raises(ValueError, match=message):
        accuracy(predictions, labels)


def test_compute_metrics_per_task():
    """The paper's metrics (section 4.1), as the task table names them, main metric first."""
    assert compute_metrics(get_task("cola").metrics, PREDS, LABELS) == {"mcc": pytest.approx(1 / 3)}
    assert list(compute_metrics(get_task("mrpc").metrics, PREDS, LABELS)) == ["f1", "accuracy"]
    assert list(compute_metrics(get_task("qqp").metrics, PREDS, LABELS)) == ["f1", "accuracy"]
    stsb = compute_metrics(get_task("stsb").metrics, [0.1, 2.0, 3.5], [1.0, 2.5, 4.0])
    assert list(stsb) == ["spearman", "pearson"]
    for task in ("sst2", "qnli", "rte", "mnli"):
        assert list(compute_metrics(get_task(task).metrics, PREDS, LABELS)) == ["accuracy"]


class_ids = st.lists(st.integers(0, 2), min_size=1, max_size=40)
floats = st.floats(-1e6, 1e6, allow_nan=False)
score_pairs = st.integers(2, 40).flatmap(lambda n: st.tuples(st.lists(floats, min_size=n, max_size=n),
                                                             st.lists(floats, min_size=n, max_size=n)))


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 40).flatmap(lambda n: st.tuples(st.lists(st.integers(0, 2), min_size=n, max_size=n),
                                                      st.lists(st.integers(0, 2), min_size=n, max_size=n))))
def test_accuracy_and_mcc_ranges(pair):
    predictions, labels = pair
    assert 0.0 <= accuracy(predictions, labels) <= 1.0
    assert -1.0 - 1e-12 <= matthews_corrcoef(predictions, labels) <= 1.0 + 1e-12


@settings(max_examples=50, deadline=None)
@given(class_ids)
def test_mcc_perfect_and_inverted(labels):
    labels = np.array(labels)
    expected = 0.0 if len(set(labels)) == 1 else 1.0
    assert matthews_corrcoef(labels, labels) == pytest.approx(expected)
    binary = labels % 2
    inverted = 1 - binary
    expected = 0.0 if len(set(binary)) == 1 else -1.0
    assert matthews_corrcoef(inverted, binary) == pytest.approx(expected)


@settings(max_examples=50, deadline=None)
@given(st.integers(2, 40).flatmap(lambda n: st.tuples(st.lists(st.integers(-1000, 1000), min_size=n, max_size=n),
                                                      st.lists(floats, min_size=n, max_size=n))))
def test_spearman_invariant_under_monotone_transform(pair):
    x, y = (np.array(a) for a in pair)
    # strictly increasing; on integers this small it keeps ties as ties and creates none in float64
    transformed = np.arctan(x / 100) * 7 + 3
    assert spearman(transformed, y) == pytest.approx(spearman(x, y), abs=1e-9)


@settings(max_examples=50, deadline=None)
@given(st.integers(2, 30).flatmap(lambda n: st.tuples(st.lists(st.integers(0, 4), min_size=n, max_size=n),
                                                      st.lists(st.integers(0, 4), min_size=n, max_size=n))))
def test_spearman_with_ties_is_pearson_of_average_ranks(pair):
    x, y = pair
    assert spearman(x, y) == pytest.approx(pearson(average_ranks(x), average_ranks(y)), abs=1e-12)


@settings(max_examples=50, deadline=None)
@given(score_pairs)
def test_pearson_symmetric_and_bounded(pair):
    x, y = pair
    r = pearson(x, y)
    assert r == pytest.approx(pearson(y, x), abs=1e-12)
    assert -1.0 <= r <= 1.0
