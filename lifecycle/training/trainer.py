"""The training loop of one worker: DDP over the image tower + head, one global batch per step.

Every step draws one **global** batch from a per-epoch order that depends only on the seed and
the epoch; rank r takes rows ``r, r + N, ...`` of it. Each rank's loss is its share of the
class-weighted mean over the *whole* global batch (scaled by N, since DDP averages gradients),
so N processes take exactly the step one process takes with the same global batch.

After every step (``sync_check="step"``) or epoch, every rank hashes its parameters and the
hashes are compared: ranks that drifted apart stop the run instead of training on silently.
Validation rows are shared out the same way and gathered; rank 0 decides early stopping and
broadcasts it. Mixed precision (bf16, or fp16 with a gradient scaler) runs on GPUs only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from burnscope.lifecycle.training import checkpoint, distributed
from burnscope.lifecycle.training.augment import Augment, normalise
from burnscope.lifecycle.training.data import load_prepared

log = logging.getLogger(__name__)

BALANCE = ("loss", "sampler", "none")
AMP = ("auto", "off", "bf16", "fp16")


@dataclass
class TrainSettings:
    out_dir: str
    model: str | None = None
    model_config: str = "biomedclip"
    epochs: int = 10
    unfreeze_blocks: int = 2
    batch_size: int = 16  # global, over all processes
    lr_head: float = 1e-3
    lr_tower: float = 1e-5
    weight_decay: float = 0.05
    warmup_fraction: float = 0.05
    seed: int = 0
    patience: int = 3
    balance: str = "loss"
    augment: bool = True
    amp: str = "auto"
    resume: bool = False
    sync_check: str = "epoch"  # "epoch" | "step"
    progress: bool = True

    @property
    def work_dir(self) -> Path:
        return Path(self.out_dir) / "work"

    @property
    def checkpoint_dir(self) -> Path:
        return Path(self.out_dir) / "checkpoints"

    def run_identity(self, data_digest: str) -> dict[str, Any]:
        """What a resumed run must share with the run it resumes."""
        keys = ("model", "model_config", "unfreeze_blocks", "batch_size", "lr_head", "lr_tower", "weight_decay",
                "seed", "balance", "augment", "epochs", "warmup_fraction")
        return {"data": data_digest, **{k: getattr(self, k) for k in keys}}


def epoch_order(train: np.ndarray, labels: np.ndarray, epoch: int, seed: int, balance: str) -> np.ndarray:
    """Training rows of one epoch: a seeded permutation, or with ``balance="sampler"`` a
    class-balanced draw with replacement (each class equally likely) of the same length."""
    rng = np.random.default_rng([seed, epoch, 7])
    if balance != "sampler":
        return rng.permutation(train)
    counts = np.bincount(labels[train], minlength=labels.max() + 1).astype(float)
    weights = 1.0 / counts[labels[train]]
    return rng.choice(train, size=len(train), replace=True, p=weights / weights.sum())


def global_batches(order: np.ndarray, batch_size: int, world: int) -> list[np.ndarray]:
    """Consecutive global batches; a last batch smaller than the number of processes is dropped."""
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return [b for b in batches if len(b) >= world]


def class_weights(labels: np.ndarray, train: np.ndarray, classes: int, balance: str) -> np.ndarray:
    """Loss weight per class: ``n / (C · n_c)`` with ``balance="loss"``, else 1."""
    if balance != "loss":
        return np.ones(classes)
    counts = np.bincount(labels[train], minlength=classes).astype(float)
    return len(train) / (classes * np.maximum(counts, 1.0))


def lr_factor(step: int, total: int, warmup_fraction: float) -> float:
    """Linear warm-up, then cosine decay to 10 % of the base rate."""
    warmup = max(1, int(total * warmup_fraction))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def parameter_digest(module: Any) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu").contiguous().numpy().tobytes())
    return digest.hexdigest()[:20]


def _amp_dtype(device: str, amp: str):
    import torch

    if not device.startswith("cuda") or amp == "off":
        return None
    if amp == "fp16" or (amp == "auto" and not torch.cuda.is_bf16_supported()):
        return torch.float16
    return torch.bfloat16


class _Log:
    """``train_log.jsonl``, written by rank 0 only."""

    def __init__(self, ctx: distributed.Context, path: Path):
        self.ctx, self.path = ctx, path

    def write(self, **event: Any) -> None:
        if self.ctx.main:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(event) + "\n")


def _progress(enabled: bool):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    TextColumn("{task.fields[status]}"), console=Console(stderr=True), disable=not enabled,
                    transient=False)


def train_worker(ctx: distributed.Context, settings: TrainSettings) -> None:
    """Train on this rank until the last epoch or early stopping; rank 0 writes checkpoints."""
    import torch
    import torch.nn.functional as F

    from burnscope.engines.model import load_biomedclip
    from burnscope.lifecycle.training.network import BurnClassifier, param_groups, set_trainable
    from burnscope.operators.burn_severity.core import BurnHead

    torch.manual_seed(settings.seed)
    if ctx.device.startswith("cuda"):
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    data = load_prepared(settings.work_dir)
    run = settings.run_identity(data.digest())
    bundle = load_biomedclip(settings.model, config=settings.model_config)
    init = BurnHead.load(settings.work_dir / "head_init.json")
    net = BurnClassifier(bundle.model.visual, init.weights * init.logit_scale, init.bias)
    del bundle  # the text tower is not trained
    set_trainable(net, settings.unfreeze_blocks)
    net.to(ctx.device)
    model = net
    if ctx.distributed:
        model = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[torch.device(ctx.device)] if ctx.device.startswith("cuda") else None,
            broadcast_buffers=False
        )
    optimizer = torch.optim.AdamW(param_groups(net, settings.lr_head, settings.lr_tower, settings.weight_decay))
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    amp_dtype = _amp_dtype(ctx.device, settings.amp)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    cfg = json.loads((settings.work_dir / "preprocess.json").read_text())
    mean, std = cfg["mean"], cfg["std"]
    augment = Augment(enabled=settings.augment)
    n_classes = len(data.classes)
    weights = torch.as_tensor(class_weights(data.labels, data.train, n_classes, settings.balance), dtype=torch.float32)
    steps_per_epoch = len(global_batches(data.train, settings.batch_size, ctx.world))
    total_steps = max(1, steps_per_epoch * settings.epochs)
    log_file = _Log(ctx, Path(settings.out_dir) / "train_log.jsonl")

    start_epoch, step, best_f1, bad_epochs, history = 0, 0, -1.0, 0, []
    best_state: dict[str, Any] | None = None
    if settings.resume:
        state = checkpoint.load(settings.checkpoint_dir, run, map_location="cpu")
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, step = int(state["epoch"]), int(state["step"])
        best_f1, bad_epochs, history = float(state["best_f1"]), int(state["bad_epochs"]), list(state["history"])
        log_file.write(event="resume", epoch=start_epoch, step=step)

    def check_sync(epoch: int, at_step: int) -> None:
        digests = distributed.gather_objects(ctx, parameter_digest(net))
        log_file.write(event="sync", epoch=epoch, step=at_step, digests=digests)
        if len(set(digests)) != 1:
            raise RuntimeError(f"training ranks diverged at step {at_step}: parameter hashes {digests}")

    with _progress(settings.progress and ctx.main) as bars:
        for epoch in range(start_epoch, settings.epochs):
            if bad_epochs >= settings.patience:
                break
            started = time.perf_counter()
            net.train()
            batches = global_batches(epoch_order(data.train, data.labels, epoch, settings.seed, settings.balance),
                                     settings.batch_size, ctx.world)
            task = bars.add_task(f"epoch {epoch + 1}/{settings.epochs}", total=len(batches), status="")
            losses = []
            for batch in batches:
                mine = batch[ctx.rank :: ctx.world]
                images = normalise(augment(data.crops[mine], mine, epoch, settings.seed, mean), mean, std)
                x = torch.from_numpy(images).to(ctx.device)
                y = torch.as_tensor(data.labels[mine], device=ctx.device)
                denominator = float(weights[torch.as_tensor(data.labels[batch])].sum())
                factor = lr_factor(step, total_steps, settings.warmup_fraction)
                for group, base in zip(optimizer.param_groups, base_lrs):
                    group["lr"] = base * factor
                with torch.autocast("cuda", dtype=amp_dtype, enabled=amp_dtype is not None):
                    logits = model(x)
                per_image = F.cross_entropy(logits.float(), y, reduction="none") * weights.to(ctx.device)[y]
                loss = per_image.sum() * ctx.world / denominator
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                step += 1
                losses.append(float(loss.detach()) / ctx.world)
                if settings.sync_check == "step":
                    check_sync(epoch, step)
                bars.update(task, advance=1, status=f"loss {np.mean(losses):.3f}")
                log_file.write(event="step", epoch=epoch, step=step, loss=losses[-1])
            if settings.sync_check != "step":
                check_sync(epoch, step)
            val = _validate(ctx, net, data, mean, std, settings.batch_size, amp_dtype)
            improved = val["macro_f1"] > best_f1 + 1e-12 if val else True
            if improved:
                best_f1 = val["macro_f1"] if val else best_f1
                bad_epochs = 0
                best_state = {"model": {k: v.detach().to("cpu").clone() for k, v in net.state_dict().items()},
                              "epoch": epoch + 1, "val": val}
            else:
                bad_epochs += 1
            bad_epochs = distributed.broadcast_object(ctx, bad_epochs)
            record = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)) if losses else None,
                      "val": val, "seconds": round(time.perf_counter() - started, 2), "improved": improved}
            history.append(record)
            bars.update(task, status=f"loss {record['train_loss'] or 0:.3f} · val macro-F1 "
                                     f"{(val or {}).get('macro_f1', float('nan')):.3f}")
            if ctx.main:
                checkpoint.save(settings.checkpoint_dir, epoch + 1, {
                    "epoch": epoch + 1, "step": step, "model": net.state_dict(), "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict(), "best_f1": best_f1, "bad_epochs": bad_epochs,
                    "history": history, "run": run,
                }, best_state if improved else None)
            log_file.write(event="epoch", **record)
            distributed.barrier(ctx)
    if ctx.main:
        (Path(settings.out_dir) / "work" / "history.json").write_text(json.dumps(history, indent=1))


def _validate(ctx, net, data, mean, std, batch_size, amp_dtype) -> dict[str, Any] | None:
    """Validation accuracy, macro-F1 and loss on all validation rows (shared out, gathered)."""
    import torch
    import torch.nn.functional as F
    from sklearn.metrics import accuracy_score, f1_score

    if len(data.val) == 0:
        return None
    net.eval()
    mine = data.val[ctx.rank :: ctx.world]
    rows, logits = [], []
    with torch.no_grad():
        for i in range(0, len(mine), batch_size):
            chunk = mine[i : i + batch_size]
            x = torch.from_numpy(normalise(np.ascontiguousarray(data.crops[chunk].transpose(0, 3, 1, 2)), mean, std))
            with torch.autocast("cuda", dtype=amp_dtype, enabled=amp_dtype is not None):
                out = net(x.to(ctx.device)).float().cpu().numpy()
            rows.extend(chunk.tolist())
            logits.append(out)
    local = (rows, np.concatenate(logits).tolist() if logits else [])
    gathered = distributed.gather_objects(ctx, local)
    all_rows = [r for part in gathered for r in part[0]]
    all_logits = np.array([v for part in gathered for v in part[1]], np.float64)
    y = data.labels[all_rows]
    pred = all_logits.argmax(1)
    loss = float(F.cross_entropy(torch.as_tensor(all_logits), torch.as_tensor(y)))
    labels = list(range(len(data.classes)))
    return {"n": len(y), "accuracy": float(accuracy_score(y, pred)), "loss": loss,
            "macro_f1": float(f1_score(y, pred, labels=labels, average="macro", zero_division=0))}


def settings_dict(settings: TrainSettings) -> dict[str, Any]:
    return asdict(settings)
