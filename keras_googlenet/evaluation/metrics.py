"""Metrics of softmax outputs against labels: top-1/top-k, loss, per-class accuracy,
precision, recall and F1, the confusion matrix and its most-confused pairs."""

from __future__ import annotations

import numpy as np

TOP_K = 5
CONFUSED_PAIRS = 25  # how many most-confused pairs the report lists
_EPSILON = 1e-7  # Keras' clip in cross-entropy, so the loss matches training's val loss


def summarize(probabilities: np.ndarray, labels: np.ndarray, class_names) -> dict:
    """Metrics of softmax outputs against integer labels.

    Args:
        probabilities: float [N, C].
        labels: int [N].
        class_names: C names.

    Returns:
        A dict with `top1`, `top5` (top-min(5, C)), `loss` (mean cross-entropy),
        `mean_per_class_accuracy`, `averages` (macro and weighted precision, recall, F1),
        `confusion` (int [C, C], rows true), `per_class` (rows for per_class.csv; `count` is
        the support) and `most_confused` (pairs, most frequent first).
    """
    n, c = probabilities.shape
    k = min(TOP_K, c)
    predicted = probabilities.argmax(axis=1)
    top_k = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    hit1 = predicted == labels
    hitk = (top_k == labels[:, None]).any(axis=1)
    p_true = probabilities[np.arange(n), labels]
    loss = float(-np.log(np.clip(p_true, _EPSILON, 1.0)).mean()) if n else float("nan")

    confusion = np.zeros((c, c), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    counts = confusion.sum(axis=1)
    correct = np.diag(confusion)
    topk_correct = np.bincount(labels[hitk], minlength=c)
    scores = precision_recall_f1(confusion)
    per_class = []
    for i, name in enumerate(class_names):
        count = int(counts[i])
        per_class.append(
            {
                "id": i,
                "label": name,
                "count": count,
                "correct": int(correct[i]),
                "accuracy": round(correct[i] / count, 6) if count else "",
                "top5_accuracy": round(topk_correct[i] / count, 6) if count else "",
                **{k: round(float(v[i]), 6) if count else "" for k, v in scores.items()},
            }
        )
    seen = counts > 0
    return {
        "num_images": int(n),
        "num_classes": int(c),
        "top1": float(hit1.mean()) if n else float("nan"),
        "top5": float(hitk.mean()) if n else float("nan"),
        "top_k": k,
        "loss": loss,
        "mean_per_class_accuracy": float((correct[seen] / counts[seen]).mean()) if n else 0.0,
        "averages": averaged(scores, counts),
        "confusion": confusion,
        "per_class": per_class,
        "most_confused": most_confused(confusion, class_names, CONFUSED_PAIRS),
    }


def precision_recall_f1(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class precision, recall and F1 of a confusion matrix (rows true, columns predicted).

    A class never predicted has precision 0, one never present recall 0 (scikit-learn's
    `zero_division=0`), and F1 0 when both are 0.
    """
    hits = np.diag(confusion).astype(np.float64)
    predicted, actual = confusion.sum(axis=0), confusion.sum(axis=1)
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
    recall = np.divide(hits, actual, out=np.zeros_like(hits), where=actual > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(hits), where=both > 0)
    return {"precision": precision, "recall": recall, "f1": f1}


def averaged(scores: dict[str, np.ndarray], support: np.ndarray) -> dict[str, dict]:
    """Macro (each class with images counts once) and weighted (by support) averages.

    Classes without an image in the evaluated set are left out of both: they have no recall.
    """
    seen = support > 0
    weights = support[seen] / max(support[seen].sum(), 1)
    return {
        "macro": {k: float(v[seen].mean()) if seen.any() else 0.0 for k, v in scores.items()},
        "weighted": {k: float((v[seen] * weights).sum()) for k, v in scores.items()},
    }


def most_confused(confusion: np.ndarray, class_names, limit: int) -> list[dict]:
    """Off-diagonal cells, largest count first (ties: larger share of the true class first)."""
    counts = confusion.sum(axis=1, keepdims=True)
    rates = confusion / np.maximum(counts, 1)
    true_ids, pred_ids = np.nonzero(confusion - np.diag(np.diag(confusion)))
    cells = sorted(
        zip(true_ids.tolist(), pred_ids.tolist(), strict=True),
        key=lambda tp: (-confusion[tp], -rates[tp], tp),
    )
    return [
        {
            "true_id": t,
            "true": class_names[t],
            "predicted_id": p,
            "predicted": class_names[p],
            "count": int(confusion[t, p]),
            "rate": round(float(rates[t, p]), 6),
        }
        for t, p in cells[:limit]
    ]
