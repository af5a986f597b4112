"""GLUE metrics in plain numpy, so evaluation needs no scikit-learn or scipy (which task reports
which: the task table, glue.py).

Degenerate inputs get a defined value, not NaN: a few-shot model that predicts one class
everywhere is common early in training, and checkpoint selection must still compare it. MCC,
Pearson and Spearman are 0.0 when either side is constant, F1 is 0.0 when neither side has the
positive class. Empty inputs, mismatched shapes and non-finite values (a bug or a diverged
model upstream) are errors.
"""
import numpy as np


def _check_pair(predictions, labels) -> tuple[np.ndarray, np.ndarray]:
    """Return both as 1-D arrays of equal, non-zero length, or raise naming the problem."""
    p, y = np.asarray(predictions), np.asarray(labels)
    if p.ndim != 1 or y.ndim != 1:
        raise ValueError(f"metrics need 1-D arrays, got predictions {p.shape} and labels {y.shape}; for "
                         "classification pass class ids (logits.argmax(-1)), for regression squeeze the last dim")
    if p.shape != y.shape:
        raise ValueError(f"{len(p)} predictions but {len(y)} labels; pass one prediction per example")
    if len(p) == 0:
        raise ValueError("cannot compute a metric on zero examples; check that the evaluation split is not empty")
    for name, a in (("predictions", p), ("labels", y)):
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise ValueError(f"{name} contain NaN or inf; the model has likely diverged (try a lower learning rate)")
    return p, y


def accuracy(predictions, labels) -> float:
    """Fraction of predictions equal to the label."""
    p, y = _check_pair(predictions, labels)
    return float(np.mean(p == y))


def f1(predictions, labels) -> float:
    """Binary F1 of the positive class 1: 2 TP / (2 TP + FP + FN); 0.0 if there is no 1 anywhere."""
    p, y = _check_pair(predictions, labels)
    tp = np.sum((p == 1) & (y == 1))
    fp = np.sum((p == 1) & (y != 1))
    fn = np.sum((p != 1) & (y == 1))
    denominator = 2 * tp + fp + fn
    return float(2 * tp / denominator) if denominator else 0.0


def matthews_corrcoef(predictions, labels) -> float:
    """Matthews correlation, multiclass form (Gorodkin 2004); 0.0 if either side is constant.

    From the confusion counts: c correct, s total, t_k true and p_k predicted per class,
        MCC = (c s - sum_k p_k t_k) / sqrt((s^2 - sum_k p_k^2) (s^2 - sum_k t_k^2)),
    which for two classes is the usual (TP TN - FP FN) / sqrt(...).
    """
    p, y = _check_pair(predictions, labels)
    classes, codes = np.unique(np.concatenate([p, y]), return_inverse=True)
    p_codes, y_codes = codes[: len(p)], codes[len(p):]
    predicted = np.bincount(p_codes, minlength=len(classes)).astype(np.float64)
    true = np.bincount(y_codes, minlength=len(classes)).astype(np.float64)
    correct, total = float(np.sum(p_codes == y_codes)), float(len(p))
    denominator = np.sqrt((total**2 - predicted @ predicted) * (total**2 - true @ true))
    if denominator == 0:
        return 0.0
    return float((correct * total - predicted @ true) / denominator)


def pearson(predictions, labels) -> float:
    """Pearson correlation in float64; 0.0 if either side is constant."""
    p, y = _check_pair(predictions, labels)
    if np.all(p == p[0]) or np.all(y == y[0]):  # tested exactly: centring would leave rounding noise
        return 0.0
    p = p.astype(np.float64) - p.mean(dtype=np.float64)
    y = y.astype(np.float64) - y.mean(dtype=np.float64)
    p, y = p / np.abs(p).max(), y / np.abs(y).max()  # rescale so the dot products cannot under/overflow
    return float(np.clip((p @ y) / np.sqrt((p @ p) * (y @ y)), -1.0, 1.0))


def average_ranks(values) -> np.ndarray:
    """1-based ranks where tied values share the mean of the ranks they span: [5, 1, 5] -> [2.5, 1, 2.5]."""
    _, inverse, counts = np.unique(np.asarray(values), return_inverse=True, return_counts=True)
    last_rank = np.cumsum(counts)
    return (last_rank - (counts - 1) / 2)[inverse]


def spearman(predictions, labels) -> float:
    """Spearman correlation: Pearson of the average ranks; 0.0 if either side is constant."""
    p, y = _check_pair(predictions, labels)
    return pearson(average_ranks(p), average_ranks(y))


METRICS = {"accuracy": accuracy, "f1": f1, "mcc": matthews_corrcoef, "pearson": pearson, "spearman": spearman}


def compute_metrics(names: tuple[str, ...], predictions, labels) -> dict[str, float]:
    """The metrics `names` (a task's `metrics`), in that order; class ids for classification, scores for STS-B."""
    return {name: METRICS[name](predictions, labels) for name in names}
