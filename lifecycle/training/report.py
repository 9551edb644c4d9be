"""The metrics report and the model card of a fine-tuned model.

Metrics on the validation split (patients the model never trained on): accuracy, macro-F1,
per-class precision / recall / F1, the confusion matrix, ECE and a reliability diagram (the
metrics and plots of :mod:`burnscope.operators.burn_severity.evaluation`). Confidence intervals:
95 % percentile bootstrap **over patients** (a patient's images are resampled together, since
they are not independent) for accuracy and macro-F1, and Wilson score intervals for per-class
precision and recall.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from burnscope.common.messages import DEMO_BANNER

BOOTSTRAP_SAMPLES = 1000
NOT_A_MEDICAL_DEVICE = (
    "burnscope is decision support for trained clinicians, not a diagnosis and not a medical device. "
    "It has no regulatory clearance; every output must be checked by a qualified clinician."
)
BIOMEDCLIP_LICENCE = (
    "BiomedCLIP's weights are MIT-licensed (Microsoft). Its model card states that any deployed use "
    "case of the model — commercial or otherwise — is currently out of scope, and discourages its use "
    "for automated diagnosis or in a medical device. A model fine-tuned from it inherits that limit: "
    "research, evaluation and development of local tools only, not production care without your own "
    "validation, governance and regulatory assessment."
)


def wilson_interval(successes: int, total: int, z: float = 1.959964) -> tuple[float | None, float | None]:
    if total == 0:
        return None, None
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * np.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def bootstrap_by_group(y: np.ndarray, pred: np.ndarray, groups: Sequence[str], labels: list[int],
                       samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> dict[str, list[float] | None]:
    """95 % intervals of accuracy and macro-F1, resampling whole groups (patients) with replacement."""
    from sklearn.metrics import f1_score

    names = sorted(set(groups))
    if len(names) < 2:
        return {"accuracy": None, "macro_f1": None}
    rows = {g: np.flatnonzero(np.asarray(groups) == g) for g in names}
    rng = np.random.default_rng(seed)
    acc, f1 = [], []
    for _ in range(samples):
        pick = np.concatenate([rows[names[i]] for i in rng.integers(0, len(names), len(names))])
        acc.append(float(np.mean(y[pick] == pred[pick])))
        f1.append(float(f1_score(y[pick], pred[pick], labels=labels, average="macro", zero_division=0)))
    return {k: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] for k, v in (("accuracy", acc), ("macro_f1", f1))}


def build_metrics(head: Any, embeddings: np.ndarray, labels: Sequence[str], groups: Sequence[str]) -> dict[str, Any]:
    """``evaluate_head``'s metrics plus per-class P/R/F1 and confidence intervals."""
    from sklearn.metrics import precision_recall_fscore_support

    from burnscope.operators.burn_severity.evaluation import evaluate_head

    metrics = evaluate_head(head, embeddings, labels)
    classes = metrics["classes"]
    predicted = [head.classes[i] for i in head.predict_proba(embeddings).argmax(1)]
    precision, recall, f1, support = precision_recall_fscore_support(labels, predicted, labels=classes, zero_division=0)
    for i, name in enumerate(classes):
        tp = sum(p == t == name for p, t in zip(predicted, labels))
        n_pred = sum(p == name for p in predicted)
        metrics["per_class"][name].update(
            precision=float(precision[i]), recall=float(recall[i]), f1=float(f1[i]),
            precision_ci=wilson_interval(tp, n_pred), recall_ci=wilson_interval(tp, int(support[i])),
        )
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[t] for t in labels])
    pred = np.array([index[p] for p in predicted])
    metrics["ci95"] = bootstrap_by_group(y, pred, groups, list(range(len(classes))))
    metrics["n_patients"] = len(set(groups))
    return metrics


def write_metrics(out_dir: Path, metrics: dict[str, Any], zero_shot: dict[str, Any] | None) -> list[Path]:
    from burnscope.operators.burn_severity.evaluation import save_plots

    report = {"validation": metrics, "zero_shot_validation": zero_shot}
    (out_dir / "metrics.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    return [out_dir / "metrics.json", *save_plots(metrics, out_dir)]


def _f(value: Any, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _ci(interval: Any) -> str:
    return "—" if not interval or interval[0] is None else f"[{interval[0]:.3f}, {interval[1]:.3f}]"


def model_card(
    *, name: str, base: dict[str, Any], data: dict[str, Any], settings: dict[str, Any], training: dict[str, Any],
    metrics: dict[str, Any] | None, zero_shot: dict[str, Any] | None, manifest_files: dict[str, Any],
) -> str:
    """The model card (Markdown) of a fine-tuned model folder."""
    lines = [f"# Model card: {name}", ""]
    if base.get("demo"):
        lines += [f"> **{DEMO_BANNER}.** This model was fine-tuned from the random-weight demo model; its "
                  "numbers say nothing about burns.", ""]
    lines += [
        "## Model", "",
        f"* Base: {base.get('name')} — weights: {base.get('weights')}",
        f"* Trained: the last {settings['unfreeze_blocks']} of {training['blocks']} transformer blocks of the image "
        f"tower (0 = head only) and a linear head over {', '.join(data['classes'])}; the text tower is unchanged.",
        f"* Epochs run: {training['epochs_run']} of {settings['epochs']} (early stopping on validation macro-F1, "
        f"patience {settings['patience']}); best epoch: {training['best_epoch']}.",
        f"* Processes: {training['world']} ({training['backend'] or 'single process'}), device {training['device']}, "
        f"mixed precision: {training['amp'] or 'off'}; global batch {settings['batch_size']}; seed {settings['seed']}.",
        f"* Class balance: {settings['balance']}; augmentation: "
        f"{'flip, rotation ≤ 10°, colour jitter ≤ 10 % (hue ≤ 0.02)' if settings['augment'] else 'off'}.",
        f"* Temperature (fitted on the validation split): {_f(training.get('temperature'), 4)}.", "",
        "## Intended use", "",
        "Decision support for trained clinicians evaluating burn photographs at the site that trained it: a proposed "
        "burn-depth class with a calibrated confidence, or `needs_review` below the abstain threshold. Research, "
        "evaluation and local tool development. Not for unsupervised use, not for diagnosis, not outside the "
        "population and cameras of the training data.", "",
        f"**Not a medical device.** {NOT_A_MEDICAL_DEVICE}", "",
        "## Data and splits", "",
        f"* Source: `{data['source']}` ({data['kind']}); {data['images']} images of {data['patients']} "
        f"patients/studies; {len(data['unreadable'])} unreadable file(s) left out.",
        f"* Split: {data['split_rule']} No patient is on both sides.", "",
        "| class | train images | validation images |", "|---|---:|---:|",
    ]
    for name_, counts in data["counts"].items():
        lines.append(f"| {name_} | {counts['train']} | {counts['val']} |")
    lines += ["", f"Patients/studies: {data['patients_train']} train, {data['patients_val']} validation.", ""]
    lines += ["## Metrics (validation split)", ""]
    if metrics is None:
        lines += ["No validation images: no metrics. Do not use this model before evaluating it "
                  "(`burnscope evaluate DATA -m THIS_FOLDER`).", ""]
    else:
        ci = metrics["ci95"]
        lines += [
            f"* Accuracy {_f(metrics['accuracy'])} (95 % CI {_ci(ci['accuracy'])}); macro-F1 {_f(metrics['macro_f1'])} "
            f"(95 % CI {_ci(ci['macro_f1'])}); bootstrap over {metrics['n_patients']} patients.",
            f"* ECE {_f(metrics['ece'])} (10 bins); NLL {_f(metrics['nll'])}; abstained {metrics['abstention_rate']:.1%} "
            f"at threshold {metrics['abstain_threshold']:g}.",
        ]
        if zero_shot:
            lines.append(f"* Zero-shot head on the same images: accuracy {_f(zero_shot['accuracy'])}, "
                         f"macro-F1 {_f(zero_shot['macro_f1'])}.")
        lines += ["", "| class | n | precision (95 % CI) | recall (95 % CI) | F1 |", "|---|---:|---|---|---:|"]
        for cls, row in metrics["per_class"].items():
            lines.append(f"| {cls} | {row['support']} | {_f(row.get('precision'))} {_ci(row.get('precision_ci'))} | "
                         f"{_f(row.get('recall'))} {_ci(row.get('recall_ci'))} | {_f(row.get('f1'))} |")
        lines += ["", "Confusion matrix: `confusion_matrix.png`; reliability diagram: `reliability_diagram.png`; "
                  "all numbers: `metrics.json`.", ""]
    lines += [
        "## Limitations", "",
        "* The validation split chose the epoch and the temperature; it is not an independent test set. "
        "Evaluate on patients from another period or site before any use (`burnscope evaluate`).",
        "* Small validation sets give wide intervals: read the confidence intervals, not the point estimates.",
        "* Skin tones, cameras, lighting and burn mechanisms absent from the training data are unknown territory.", "",
        "## Licence", "",
        BIOMEDCLIP_LICENCE,
        "burnscope's code is Apache-2.0. The images used for training remain under the terms their owner set.", "",
        "## Files", "",
        "| file | bytes | sha256 |", "|---|---:|---|",
    ]
    for file, entry in manifest_files.items():
        lines.append(f"| `{file}` | {entry['bytes']} | `{entry['sha256']}` |")
    return "\n".join(lines) + "\n"
