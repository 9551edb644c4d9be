"""Metrics and plots of a burn head on labelled embeddings (scikit-learn and monai.metrics).

Accuracy, macro-F1, per-class sensitivity/specificity and the confusion matrix come from
scikit-learn; the expected calibration error (top-label, Guo et al. 2017) from MONAI's
``CalibrationErrorMetric`` applied to (confidence, correct) pairs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from burnscope.operators.burn_severity.core import BurnHead

ECE_BINS = 10


def _calibration_inputs(confidence: np.ndarray, correct: np.ndarray):
    import torch

    # MONAI's calibration metrics take (batch, channel, spatial...) tensors; one channel, N samples.
    y_pred = torch.as_tensor(confidence, dtype=torch.float64).reshape(1, 1, -1)
    y = torch.as_tensor(correct, dtype=torch.float64).reshape(1, 1, -1)
    return y_pred, y


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """Top-label ECE: bin-weighted |accuracy − confidence| over equal-width confidence bins."""
    from monai.metrics import CalibrationErrorMetric

    metric = CalibrationErrorMetric(num_bins=bins, calibration_reduction="expected", metric_reduction="mean")
    return float(metric(*_calibration_inputs(confidence, correct)).mean())


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> dict[str, list]:
    """Per-bin mean confidence, accuracy and count (NaN-free: empty bins have count 0)."""
    from monai.metrics import calibration_binning

    mean_p, mean_acc, counts = calibration_binning(*_calibration_inputs(confidence, correct), num_bins=bins)
    mean_p, mean_acc, counts = (t.reshape(-1).numpy() for t in (mean_p, mean_acc, counts))
    return {
        "bin_edges": np.linspace(0, 1, bins + 1).round(6).tolist(),
        "confidence": [None if np.isnan(v) else float(v) for v in mean_p],
        "accuracy": [None if np.isnan(v) else float(v) for v in mean_acc],
        "count": [int(c) for c in counts],
    }


def evaluate_head(head: BurnHead, embeddings: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """All metrics of ``head`` on labelled embeddings (labels may include classes the head lacks)."""
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        log_loss,
        multilabel_confusion_matrix,
    )

    labels = list(labels)
    probs = head.predict_proba(embeddings)
    predicted = [head.classes[i] for i in probs.argmax(axis=1)]
    confidence = probs.max(axis=1)
    classes = list(head.classes) + sorted({lab for lab in labels if lab not in head.classes})
    correct = np.array([p == t for p, t in zip(predicted, labels)], float)
    mcm = multilabel_confusion_matrix(labels, predicted, labels=classes)
    per_class = {}
    for name, ((tn, fp), (fn, tp)) in zip(classes, mcm):
        per_class[name] = {
            "support": int(tp + fn),
            "sensitivity": float(tp / (tp + fn)) if tp + fn else None,
            "specificity": float(tn / (tn + fp)) if tn + fp else None,
        }
    abstained = confidence < head.abstain_threshold
    known = [lab in head.classes for lab in labels]
    metrics: dict[str, Any] = {
        "head": head.name,
        "n_images": len(labels),
        "classes": classes,
        "accuracy": float(accuracy_score(labels, predicted)),
        "macro_f1": float(f1_score(labels, predicted, labels=classes, average="macro", zero_division=0)),
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(labels, predicted, labels=classes).tolist(),
        "ece": expected_calibration_error(confidence, correct),
        "nll": (
            float(
                log_loss(
                    [head.classes.index(l) for l, k in zip(labels, known) if k],
                    probs[np.array(known)],
                    labels=list(range(len(head.classes))),
                )
            )
            if any(known)
            else None
        ),
        "temperature": head.temperature,
        "abstain_threshold": head.abstain_threshold,
        "abstention_rate": float(abstained.mean()),
        "accuracy_when_not_abstained": float(correct[~abstained].mean()) if (~abstained).any() else None,
        "reliability": reliability_bins(confidence, correct),
    }
    return metrics


def save_plots(metrics: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """``confusion_matrix.png`` and ``reliability_diagram.png`` in ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    short = [
        c.replace("_partial_thickness", " PT").replace("_thickness", " th.").replace("_", " ")
        for c in metrics["classes"]
    ]

    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    ConfusionMatrixDisplay(np.array(metrics["confusion_matrix"]), display_labels=short).plot(
        ax=ax, cmap="Blues", colorbar=False, xticks_rotation=30
    )
    ax.set_title(f"Confusion matrix — {metrics['head']} (n={metrics['n_images']})")
    fig.tight_layout()
    confusion_png = out_dir / "confusion_matrix.png"
    fig.savefig(confusion_png, dpi=110)
    plt.close(fig)

    rel = metrics["reliability"]
    edges = np.array(rel["bin_edges"])
    centres = (edges[:-1] + edges[1:]) / 2
    accuracy = np.array([np.nan if a is None else a for a in rel["accuracy"]])
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    ax.bar(
        centres,
        np.nan_to_num(accuracy),
        width=edges[1] - edges[0],
        edgecolor="black",
        alpha=0.7,
        label="accuracy",
    )
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.set_xlabel("confidence (top class)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(f"Reliability — ECE {metrics['ece']:.3f}, T={metrics['temperature']:.3g}")
    ax.legend(loc="upper left")
    fig.tight_layout()
    reliability_png = out_dir / "reliability_diagram.png"
    fig.savefig(reliability_png, dpi=110)
    plt.close(fig)
    return [confusion_png, reliability_png]
