"""Can the probabilities be trusted? Expected calibration error, NLL, one fitted temperature.

Temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks"): the logits
are divided by one scalar T fitted on the validation set by minimizing the negative
log-likelihood; T > 1 softens an overconfident model. The class ranking, so top-1 and top-5,
does not change. `evaluate --calibrate` fits T; serving/temperature.py keeps it in the run
folder and puts it in the graphs that serve that checkpoint.
"""

from __future__ import annotations

import io
import math

import numpy as np

ECE_BINS = 15  # equal-width confidence bins, as in Guo et al.
# The search interval of 1/T: temperatures between 0.02 and 50.
_INVERSE_RANGE = (0.02, 50.0)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Softmax of `logits / temperature` over the last axis, in float64."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the labels under softmax(logits / temperature).

    Computed from the logits (log-sum-exp), so a confidently wrong image costs its true
    log-odds instead of a clipped log(1e-7).
    """
    z = np.asarray(logits, dtype=np.float64) / temperature
    top = z.max(axis=1, keepdims=True)
    log_norm = top[:, 0] + np.log(np.exp(z - top).sum(axis=1))
    return float((log_norm - z[np.arange(len(labels)), labels]).mean())


def reliability_bins(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> dict:
    """Confidence (top probability) in `bins` equal-width bins (k/bins, (k+1)/bins].

    Returns:
        `count`, `confidence` (mean per bin) and `accuracy` (per bin), each a [bins] array
        (NaN where a bin is empty), and `ece`: sum over bins of count/N * |accuracy - confidence|.
    """
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    # ceil(conf * bins) - 1: a confidence of exactly k/bins falls in bin k-1, 1.0 in the last.
    index = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore"):
        mean_conf = np.bincount(index, confidence, minlength=bins) / count
        accuracy = np.bincount(index, correct.astype(np.float64), minlength=bins) / count
    gaps = np.where(count > 0, np.abs(accuracy - mean_conf), 0.0)
    ece = float((count * gaps).sum() / max(len(labels), 1))
    return {"count": count, "confidence": mean_conf, "accuracy": accuracy, "ece": ece}


def expected_calibration_error(probabilities, labels, bins: int = ECE_BINS) -> float:
    """ECE over `bins` equal-width confidence bins (see `reliability_bins`)."""
    return reliability_bins(np.asarray(probabilities), np.asarray(labels), bins)["ece"]


def fit_temperature(logits: np.ndarray, labels: np.ndarray, iterations: int = 80) -> float:
    """The temperature T minimizing `nll(logits, labels, T)`.

    The NLL is convex in 1/T, so a golden-section search over 1/T finds the minimum; 80 steps
    narrow the interval by 0.618**80, far below any difference that matters.
    """
    lo, hi = (math.log(v) for v in _INVERSE_RANGE)
    golden = (math.sqrt(5) - 1) / 2

    def cost(log_inverse):
        return nll(logits, labels, 1.0 / math.exp(log_inverse))

    a, b = hi - golden * (hi - lo), lo + golden * (hi - lo)
    fa, fb = cost(a), cost(b)
    for _ in range(iterations):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - golden * (hi - lo)
            fa = cost(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + golden * (hi - lo)
            fb = cost(b)
    return float(1.0 / math.exp((lo + hi) / 2))


def summary(logits: np.ndarray, labels: np.ndarray, temperature: float | None) -> dict:
    """ECE and NLL of the raw logits and, given a temperature, of the scaled ones."""
    result = {
        "ece_bins": ECE_BINS,
        "ece": expected_calibration_error(softmax(logits), labels),
        "nll": nll(logits, labels),
        "temperature": temperature,
    }
    if temperature is not None:
        result["ece_calibrated"] = expected_calibration_error(softmax(logits, temperature), labels)
        result["nll_calibrated"] = nll(logits, labels, temperature)
    return result


def logits_model(model):
    """The logits of an inference model: the input of its softmax layer `main`."""
    import keras

    return keras.Model(model.inputs[0], model.get_layer("main").input, name=f"{model.name}_logits")


def plot_reliability(probabilities, labels, title: str, calibrated=None) -> bytes:
    """PNG reliability diagram: accuracy per confidence bin against the diagonal, the bin
    counts below; `calibrated` (probabilities after temperature scaling) drawn beside."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = [("raw", probabilities)] + (
        [("calibrated", calibrated)] if calibrated is not None else []
    )
    fig, (ax, hist) = plt.subplots(
        2, 1, figsize=(5.5, 6.5), dpi=110, sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    edges = np.linspace(0, 1, ECE_BINS + 1)
    width = 1 / ECE_BINS / len(curves)
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect")
    for i, (name, p) in enumerate(curves):
        b = reliability_bins(np.asarray(p), np.asarray(labels))
        x = edges[:-1] + width * (i + 0.5)
        ax.bar(
            x,
            np.nan_to_num(b["accuracy"]),
            width=width,
            alpha=0.75,
            label=f"{name}: ECE {b['ece']:.3f}",
        )
        hist.bar(x, b["count"], width=width, alpha=0.75)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    hist.set_xticks(np.linspace(0, 1, 6))
    hist.set_xlabel(f"confidence (top probability), {ECE_BINS} equal-width bins")
    hist.set_ylabel("images")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()
