"""Burn-depth head on BiomedCLIP image embeddings: zero-shot prompt ensemble or a linear probe.

No Holoscan import. Pieces:

* :func:`load_prompts` / :func:`class_text_embeddings` — the editable prompt ensemble and its
  cached text embeddings (:mod:`burnscope.engines.prompts`, re-exported here).
* :class:`BurnHead` — class logits (zero-shot: ``logit_scale × cos``; probe: ``W·x + b``),
  calibrated probabilities ``softmax(logits / T)`` and the abstain rule; saved as a small JSON
  file (never encoder weights).
* :func:`fit_temperature` — temperature scaling by NLL minimisation (L-BFGS-B).
* :func:`train_linear_probe` — scikit-learn logistic regression with stratified CV.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from burnscope.common.vocabulary import CLASSES, NEEDS_REVIEW
from burnscope.engines.prompts import (  # noqa: F401  (the prompt API, re-exported for existing imports)
    DEFAULT_PROMPTS,
    PromptError,
    _l2_normalise,
    class_text_embeddings,
    ensemble_embeddings,
    load_prompts,
    prompts_digest,
    text_cache_path,
)

log = logging.getLogger(__name__)
DEFAULT_ABSTAIN_THRESHOLD = 0.5
HEAD_FORMAT = "burnscope-burn-head/1"


#: A head file or prompt file that cannot be used (wrong format, classes, dimension).
HeadError = PromptError


# --------------------------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------------------------


def softmax(logits: np.ndarray) -> np.ndarray:
    from scipy.special import softmax as _softmax

    return _softmax(np.asarray(logits, np.float64), axis=-1)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of integer labels under ``softmax(logits / T)``."""
    from scipy.special import log_softmax

    logp = log_softmax(np.asarray(logits, np.float64) / temperature, axis=-1)
    return float(-logp[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, labels: Sequence[int]) -> float:
    """Temperature T minimising the NLL of ``softmax(logits / T)`` (Guo et al., 2017).

    Optimised over log T with L-BFGS-B so T stays positive; accuracy is unchanged by design.
    """
    from scipy.optimize import minimize

    logits = np.asarray(logits, np.float64)
    labels = np.asarray(labels, int)
    if len(labels) == 0:
        raise ValueError("fit_temperature: no labelled samples")
    result = minimize(
        lambda log_t: nll(logits, labels, float(np.exp(log_t[0]))),
        x0=np.zeros(1),
        method="L-BFGS-B",
        bounds=[(np.log(1e-2), np.log(1e2))],
    )
    return float(np.exp(result.x[0]))


# --------------------------------------------------------------------------------------------
# The head
# --------------------------------------------------------------------------------------------


@dataclass
class Prediction:
    label: str  # a class key, or NEEDS_REVIEW when abstained
    probabilities: dict[str, float]
    confidence: float
    abstained: bool


@dataclass
class BurnHead:
    """Linear class scores on image embeddings, calibrated and with an abstain rule.

    ``kind`` is ``"zero-shot"`` (``weights`` = class text embeddings, scaled by ``logit_scale``)
    or ``"linear-probe"`` (``weights``/``bias`` of a logistic regression).
    """

    kind: str
    classes: list[str]
    weights: np.ndarray  # C×D
    bias: np.ndarray  # C
    logit_scale: float = 1.0
    temperature: float = 1.0
    abstain_threshold: float = DEFAULT_ABSTAIN_THRESHOLD
    model_fingerprint: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.kind if self.temperature == 1.0 else f"{self.kind} (T={self.temperature:.3g})"

    def logits(self, embeddings: np.ndarray) -> np.ndarray:
        x = np.asarray(embeddings, np.float64)
        if x.ndim != 2 or x.shape[1] != self.weights.shape[1]:
            raise HeadError(
                f"embedding dimension {x.shape[-1] if x.ndim else '?'} does not match the head ({self.weights.shape[1]})"
            )
        return self.logit_scale * (x @ self.weights.T.astype(np.float64)) + self.bias

    def predict_proba(self, embeddings: np.ndarray) -> np.ndarray:
        return softmax(self.logits(embeddings) / self.temperature)

    def predict(self, embeddings: np.ndarray) -> list[Prediction]:
        """One prediction per row; below ``abstain_threshold`` the label is ``needs_review``."""
        if len(embeddings) == 0:
            return []
        probs = self.predict_proba(embeddings)
        # Vectorised over the batch; one conversion to Python floats for all rows.
        tops = np.argmax(probs, axis=1).tolist()
        rows = probs.tolist()
        classes, threshold = self.classes, self.abstain_threshold
        out = []
        for row, top in zip(rows, tops):
            confidence = row[top]
            abstained = confidence < threshold
            out.append(
                Prediction(
                    label=NEEDS_REVIEW if abstained else classes[top],
                    probabilities=dict(zip(classes, row)),
                    confidence=confidence,
                    abstained=abstained,
                )
            )
        return out

    def calibrate(self, embeddings: np.ndarray, labels: Sequence[str]) -> tuple[float, float, float]:
        """Fit and store the temperature on labelled embeddings; returns (T, NLL before, NLL after)."""
        y = self.label_indices(labels)
        logits = self.logits(embeddings)
        before = nll(logits, y, self.temperature)
        self.temperature = fit_temperature(logits, y)
        return self.temperature, before, nll(logits, y, self.temperature)

    def label_indices(self, labels: Iterable[str]) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.classes)}
        try:
            return np.array([index[label] for label in labels], int)
        except KeyError as exc:
            raise HeadError(
                f"label {exc.args[0]!r} is not a class of this head ({', '.join(self.classes)})"
            ) from None

    # -- persistence: a small JSON file -------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": HEAD_FORMAT,
            "kind": self.kind,
            "classes": list(self.classes),
            "weights": np.asarray(self.weights, np.float64).round(7).tolist(),
            "bias": np.asarray(self.bias, np.float64).round(7).tolist(),
            "logit_scale": self.logit_scale,
            "temperature": self.temperature,
            "abstain_threshold": self.abstain_threshold,
            "model_fingerprint": self.model_fingerprint,
            "metadata": self.metadata,
        }

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "BurnHead":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise HeadError(f"{path}: not a burn head file ({exc})") from exc
        if not isinstance(data, dict) or data.get("format") != HEAD_FORMAT:
            raise HeadError(f"{path}: not a burn head file (format {HEAD_FORMAT!r} expected)")
        unknown = [c for c in data["classes"] if c not in CLASSES]
        if unknown:
            raise HeadError(f"{path}: unknown classes {unknown}")
        weights = np.asarray(data["weights"], np.float32)
        bias = np.asarray(data["bias"], np.float64)
        if (
            weights.ndim != 2
            or weights.shape[0] != len(data["classes"])
            or bias.shape != (len(data["classes"]),)
        ):
            raise HeadError(f"{path}: weights/bias shapes do not match the classes")
        return cls(
            kind=data["kind"],
            classes=list(data["classes"]),
            weights=weights,
            bias=bias,
            logit_scale=float(data.get("logit_scale", 1.0)),
            temperature=float(data.get("temperature", 1.0)),
            abstain_threshold=float(data.get("abstain_threshold", DEFAULT_ABSTAIN_THRESHOLD)),
            model_fingerprint=str(data.get("model_fingerprint", "")),
            metadata=dict(data.get("metadata", {})),
        )


def zero_shot_head(
    bundle: Any,
    prompts: Mapping[str, Sequence[str]] | str | Path | None = None,
    *,
    temperature: float = 1.0,
    abstain_threshold: float = DEFAULT_ABSTAIN_THRESHOLD,
) -> BurnHead:
    """Zero-shot head: ``softmax(logit_scale × cos(image, class prompt ensemble) / T)``."""
    if prompts is None or isinstance(prompts, (str, Path)):
        prompts = load_prompts(prompts)
    embeddings, cache, hit = class_text_embeddings(bundle, prompts)
    log.debug("prompt embeddings %s (%s)", cache.name, "cached" if hit else "computed")
    return BurnHead(
        kind="zero-shot",
        classes=list(prompts),
        weights=embeddings,
        bias=np.zeros(len(prompts)),
        logit_scale=float(bundle.logit_scale),
        temperature=temperature,
        abstain_threshold=abstain_threshold,
        model_fingerprint=bundle.fingerprint,
        metadata={"prompts_digest": prompts_digest(prompts)},
    )


def load_head(
    bundle: Any | None = None,
    head: str | Path | None = None,
    *,
    prompts: str | Path | None = None,
    abstain_threshold: float | None = None,
) -> BurnHead:
    """The head the pipeline uses: a saved head file when given, else the head of the model
    folder the bundle was loaded from, else the zero-shot ensemble.

    A saved zero-shot head keeps its temperature but takes its class embeddings from the current
    prompts and model (through the cache). A head trained on another model's embeddings is
    usable only with that model: a fingerprint mismatch is logged.
    """
    if head is None and bundle is not None:
        head = getattr(bundle, "head_path", None)  # a model folder brings its head
    if head is None:
        if bundle is None:
            raise HeadError("the zero-shot head needs the model bundle (text tower)")
        result = zero_shot_head(bundle, prompts)
    else:
        result = BurnHead.load(head)
        if result.kind == "zero-shot":
            if bundle is None:
                raise HeadError("the zero-shot head needs the model bundle (text tower)")
            calibrated = zero_shot_head(
                bundle, prompts, temperature=result.temperature, abstain_threshold=result.abstain_threshold
            )
            calibrated.metadata.update({k: v for k, v in result.metadata.items() if k != "prompts_digest"})
            if result.metadata.get("prompts_digest") not in (None, calibrated.metadata["prompts_digest"]):
                log.warning(
                    "%s: temperature was fitted with other prompts; refit it (burnscope calibrate)", head
                )
            result = calibrated
        elif (
            bundle is not None and result.model_fingerprint and result.model_fingerprint != bundle.fingerprint
        ):
            log.warning(
                "%s was trained on embeddings of another model (%s); current model is %s",
                Path(head).name,
                result.model_fingerprint,
                bundle.fingerprint,
            )
    if abstain_threshold is not None:
        result.abstain_threshold = float(abstain_threshold)
    return result


# --------------------------------------------------------------------------------------------
# Linear probe
# --------------------------------------------------------------------------------------------


def train_linear_probe(
    embeddings: np.ndarray,
    labels: Sequence[str],
    *,
    folds: int = 5,
    C: float = 1.0,
    seed: int = 0,
    abstain_threshold: float = DEFAULT_ABSTAIN_THRESHOLD,
    model_fingerprint: str = "",
) -> tuple[BurnHead, dict[str, Any]]:
    """Fit a logistic-regression probe; report stratified-CV accuracy and macro-F1.

    The temperature is fitted on the out-of-fold logits (data the fold's model did not see), so
    it corrects the final model's over-confidence rather than memorising the training set.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    x = np.asarray(embeddings, np.float64)
    labels = list(labels)
    unknown = sorted({lab for lab in labels if lab not in CLASSES})
    if unknown:
        raise HeadError(f"unknown class names {unknown}; expected some of {', '.join(CLASSES)}")
    classes = [c for c in CLASSES if c in set(labels)]
    if len(classes) < 2:
        raise HeadError(f"need at least two classes with images, got {classes}")
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[lab] for lab in labels])
    min_count = int(np.bincount(y).min())
    n_splits = min(folds, min_count)
    probe = LogisticRegression(C=C, max_iter=2000)
    report: dict[str, Any] = {
        "n_samples": len(y),
        "classes": classes,
        "counts": np.bincount(y).tolist(),
        "C": C,
    }
    temperature = 1.0
    if n_splits >= 2:
        cv = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        oof_logits = cross_val_predict(probe, x, y, cv=cv, method="decision_function")
        if oof_logits.ndim == 1:  # binary: sklearn returns one score; make it two logits
            oof_logits = np.stack([np.zeros_like(oof_logits), oof_logits], axis=1)
        oof_pred = oof_logits.argmax(axis=1)
        temperature = fit_temperature(oof_logits, y)
        report.update(
            cv_folds=n_splits,
            cv_accuracy=float(accuracy_score(y, oof_pred)),
            cv_macro_f1=float(f1_score(y, oof_pred, average="macro")),
            cv_nll_uncalibrated=nll(oof_logits, y),
            cv_nll_calibrated=nll(oof_logits, y, temperature),
        )
    else:
        report["cv_folds"] = 0
        log.warning("fewer than 2 images in some class: no cross-validation, no temperature fit")
    probe.fit(x, y)
    weights, bias = probe.coef_, probe.intercept_
    if len(classes) == 2:  # sklearn's binary form: logit(class 1) - logit(class 0)
        weights = np.vstack([np.zeros_like(weights[0]), weights[0]])
        bias = np.array([0.0, bias[0]])
    report["temperature"] = temperature
    head = BurnHead(
        kind="linear-probe",
        classes=classes,
        weights=np.asarray(weights, np.float32),
        bias=np.asarray(bias, np.float64),
        temperature=temperature,
        abstain_threshold=abstain_threshold,
        model_fingerprint=model_fingerprint,
        metadata={"training": report},
    )
    return head, report


# --------------------------------------------------------------------------------------------
# Batches → findings (what the graph operator calls)
# --------------------------------------------------------------------------------------------


class BurnSeverity:
    """Turns an :class:`~burnscope.common.messages.EmbeddingBatch` into ``list[Finding]``."""

    def __init__(self, head: BurnHead):
        self.head = head

    def __call__(self, batch: Any) -> list[Any]:
        from burnscope.common.messages import Finding

        if batch is None or len(batch.contexts) == 0:
            return []
        predictions = self.head.predict(np.asarray(batch.embeddings))
        thumbnails = batch.thumbnails or [None] * len(batch.contexts)
        return [
            Finding(
                context=context,
                label=p.label,
                probabilities=p.probabilities,
                confidence=p.confidence,
                abstained=p.abstained,
                model=batch.model,
                head=self.head.name,
                thumbnail=thumb,
            )
            for context, p, thumb in zip(batch.contexts, predictions, thumbnails)
        ]
