"""The classifier that is fine-tuned: BiomedCLIP's image tower, L2-normalised, then a linear head.

``logits = W · normalize(visual(x)) + b``: the same form as the zero-shot head
(``logit_scale × cos(image, class text)``), so the head starts as the zero-shot head
(``W = logit_scale × class text embeddings``, ``b = 0``) and training only moves it from there.
Saved, it is a :class:`~burnscope.operators.burn_severity.core.BurnHead` of kind ``fine-tuned``
that runs on the pipeline's embeddings unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


class BurnClassifier(torch.nn.Module):
    def __init__(self, visual: Any, init_weights: np.ndarray, init_bias: np.ndarray | None = None):
        super().__init__()
        self.visual = visual
        classes, dim = init_weights.shape
        self.head = torch.nn.Linear(dim, classes)
        with torch.no_grad():
            self.head.weight.copy_(torch.as_tensor(init_weights, dtype=torch.float32))
            self.head.bias.copy_(torch.as_tensor(init_bias if init_bias is not None else np.zeros(classes), dtype=torch.float32))

    def embed(self, images):
        return torch.nn.functional.normalize(self.visual(images), dim=-1)

    def forward(self, images):
        return self.head(self.embed(images))


def transformer_blocks(visual: Any) -> list[Any]:
    """The transformer blocks of the image tower, input side first (timm ViT trunk)."""
    trunk = getattr(visual, "trunk", visual)
    blocks = getattr(trunk, "blocks", None)
    if blocks is None:
        raise ValueError(f"image tower {type(visual).__name__} has no transformer blocks to unfreeze")
    return list(blocks)


def parse_unfreeze(value: str | int, total: int) -> int:
    """``--unfreeze-blocks``: a number 0…total, or ``all``."""
    if str(value).strip().lower() == "all":
        return total
    try:
        k = int(value)
    except ValueError:
        raise ValueError(f"--unfreeze-blocks must be a number or 'all', got {value!r}") from None
    if not 0 <= k <= total:
        raise ValueError(f"--unfreeze-blocks {k}: the image tower has {total} blocks (0…{total} or 'all')")
    return k


def set_trainable(model: BurnClassifier, unfreeze_blocks: int) -> dict[str, int]:
    """Freeze the tower except its last ``unfreeze_blocks`` blocks (and, then, the final norm and
    projection); all blocks also unfreezes the patch embedding. The head always trains.
    Returns parameter counts."""
    visual = model.visual
    blocks = transformer_blocks(visual)
    for p in visual.parameters():
        p.requires_grad_(False)
    if unfreeze_blocks >= len(blocks):
        for p in visual.parameters():
            p.requires_grad_(True)
    elif unfreeze_blocks > 0:
        for block in blocks[len(blocks) - unfreeze_blocks :]:
            for p in block.parameters():
                p.requires_grad_(True)
        trunk = getattr(visual, "trunk", visual)
        for name in ("norm", "fc_norm"):
            module = getattr(trunk, name, None)
            if module is not None:
                for p in module.parameters():
                    p.requires_grad_(True)
        if getattr(visual, "head", None) is not None:  # the projection to the embedding space
            for p in visual.head.parameters():
                p.requires_grad_(True)
    for p in model.head.parameters():
        p.requires_grad_(True)
    tower = sum(p.numel() for p in visual.parameters() if p.requires_grad)
    return {"tower_trainable": tower, "head": sum(p.numel() for p in model.head.parameters()),
            "tower_total": sum(p.numel() for p in visual.parameters())}


def param_groups(model: BurnClassifier, lr_head: float, lr_tower: float, weight_decay: float) -> list[dict[str, Any]]:
    """Head and tower at their own learning rates; no weight decay on biases and norms."""
    groups = []
    tower = [(n, p) for n, p in model.visual.named_parameters() if p.requires_grad]
    decay = [p for n, p in tower if p.ndim > 1]
    no_decay = [p for n, p in tower if p.ndim <= 1]
    if decay:
        groups.append({"params": decay, "lr": lr_tower, "weight_decay": weight_decay})
    if no_decay:
        groups.append({"params": no_decay, "lr": lr_tower, "weight_decay": 0.0})
    groups.append({"params": [model.head.weight], "lr": lr_head, "weight_decay": 0.0})
    groups.append({"params": [model.head.bias], "lr": lr_head, "weight_decay": 0.0})
    return groups
