"""Holoscan wrapper of the burn-depth head (:mod:`burnscope.operators.burn_severity.core`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from burnscope.operators.holoscan_runtime import holoscan  # noqa: F401  (preloads libcudart)
from holoscan.core import Operator, OperatorSpec

from burnscope.operators.burn_severity.core import BurnHead, BurnSeverity, load_head


class BurnSeverityOp(Operator):
    """Classifies burn depth from image embeddings (zero-shot prompt ensemble or a trained probe).

    Named inputs:
        embeddings: ``EmbeddingBatch`` (L2-normalised image embeddings; may be empty).

    Named outputs:
        findings: ``list[Finding]``, one per image in input order, thumbnails carried through.
            Below the abstain threshold a finding's label is ``needs_review`` (``abstained=True``).

    Parameters:
        head: a :class:`BurnHead`, or the path of a head file (``burnscope train-head``);
            None → zero-shot ensemble from ``prompts``.
        bundle: the model bundle (``engines.model.load_biomedclip``); needed for zero-shot
            (text tower, prompt-embedding cache) and to check a probe's model fingerprint.
        prompts: prompt YAML for the zero-shot head (default: ``burnscope/common/burn_depth_prompts.yaml``).
        abstain_threshold: minimum calibrated confidence; None keeps the head's own (0.5 default).
    """

    def __init__(
        self,
        fragment,
        *args,
        head: BurnHead | str | Path | None = None,
        bundle: Any = None,
        prompts: str | Path | None = None,
        abstain_threshold: float | None = None,
        **kwargs,
    ):
        if not isinstance(head, BurnHead):
            head = load_head(bundle, head, prompts=prompts, abstain_threshold=abstain_threshold)
        elif abstain_threshold is not None:
            head.abstain_threshold = float(abstain_threshold)
        self.severity = BurnSeverity(head)
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.input("embeddings")
        spec.output("findings")

    def compute(self, op_input, op_output, context) -> None:
        op_output.emit(self.severity(op_input.receive("embeddings")), "findings")
