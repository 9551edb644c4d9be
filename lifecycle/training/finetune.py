"""``burnscope finetune``: checks → decoded data and split → training workers → model folder + report.

Everything that can be wrong with the input is found before the first training step: unknown
labels, classes with too few images, a patient on both sides of a given split, a checkpoint that
is corrupt or belongs to another run, weights that do not load. Then:

1. ``prepare_run`` (one process: the CLI, or rank 0 under ``torchrun``) decodes the images once into
   ``OUT_DIR/work/``, splits by patient, writes ``splits.json``, the zero-shot head the training
   starts from, and the zero-shot metrics on the validation split (the baseline);
2. the workers train (:func:`~burnscope.lifecycle.training.trainer.train_worker`);
3. ``finish_run`` loads the best epoch, fits the temperature on the validation split, writes the
   model folder (``engines/model_folder.py``), ``metrics.json``, the plots and ``MODEL_CARD.md``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np

from burnscope.lifecycle.training import checkpoint, distributed
from burnscope.lifecycle.training.data import (
    DEFAULT_MIN_PER_CLASS, DataError, check_dataset, load_prepared, prepare, read_dataset, save_prepared,
)
from burnscope.lifecycle.training.trainer import TrainSettings, settings_dict, train_worker

log = logging.getLogger(__name__)


@dataclasses.dataclass
class FinetuneRequest:
    data: str
    settings: TrainSettings
    unfreeze: str = "2"  # a number or "all"
    nproc: int = 1
    val_fraction: float = 0.2
    min_per_class: int = DEFAULT_MIN_PER_CLASS


def _class_rows(head: Any, classes: list[str]) -> Any:
    """The zero-shot head restricted to the classes the data has."""
    keep = [head.classes.index(c) for c in classes]
    head.weights, head.bias, head.classes = head.weights[keep], head.bias[keep], list(classes)
    return head


def _embed(net_or_bundle: Any, crops: np.ndarray, mean, std, batch: int = 32) -> np.ndarray:
    import torch

    from burnscope.lifecycle.training.augment import normalise

    out = []
    with torch.inference_mode():
        for i in range(0, len(crops), batch):
            x = torch.from_numpy(normalise(np.ascontiguousarray(np.asarray(crops[i : i + batch]).transpose(0, 3, 1, 2)), mean, std))
            out.append(net_or_bundle(x).float().numpy())
    return np.concatenate(out) if out else np.zeros((0, 1), np.float32)


def prepare_run(request: FinetuneRequest, on_progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Checks and data preparation (see the module docstring). Raises ``ValueError`` subclasses."""
    from burnscope.engines.model import load_biomedclip
    from burnscope.lifecycle.training.network import parse_unfreeze, transformer_blocks
    from burnscope.operators.burn_severity.core import zero_shot_head
    from burnscope.operators.burn_severity.evaluation import evaluate_head

    settings = request.settings
    out = Path(settings.out_dir)
    samples = read_dataset(request.data)
    check_dataset(samples, request.min_per_class)
    if settings.resume:
        checkpoint.load(settings.checkpoint_dir)  # corrupt or missing: say so before decoding anything
    elif (settings.checkpoint_dir / checkpoint.LAST).is_file():
        raise DataError(f"{out} already holds a training run: add --resume to continue it, or choose another OUT_DIR")
    bundle = load_biomedclip(settings.model, config=settings.model_config)
    settings.unfreeze_blocks = parse_unfreeze(request.unfreeze, len(transformer_blocks(bundle.model.visual)))
    cfg = bundle.preprocess_cfg
    size = int(cfg.get("image_size", 224))
    data = prepare(samples, size=size, val_fraction=request.val_fraction, seed=settings.seed,
                   min_per_class=request.min_per_class, on_progress=on_progress)
    if settings.resume:
        checkpoint.load(settings.checkpoint_dir, settings.run_identity(data.digest()))
    save_prepared(data, settings.work_dir)
    (settings.work_dir / "preprocess.json").write_text(json.dumps({"mean": cfg["mean"], "std": cfg["std"], "size": size}))
    head = _class_rows(zero_shot_head(bundle), data.classes)
    head.save(settings.work_dir / "head_init.json")
    zero_shot = None
    if len(data.val):
        embeddings = _embed(lambda x: bundle.model.encode_image(x, normalize=True), data.crops[data.val], cfg["mean"], cfg["std"])
        zero_shot = evaluate_head(head, embeddings, [data.classes[i] for i in data.labels[data.val]])
    (settings.work_dir / "zero_shot_val.json").write_text(json.dumps(zero_shot))
    split_of = {int(i): "train" for i in data.train} | {int(i): "val" for i in data.val}
    splits = [{"source": s, "label": data.classes[int(y)], "group": g, "split": split_of.get(i)}
              for i, (s, y, g) in enumerate(zip(data.sources, data.labels, data.groups))]
    (out / "splits.json").write_text(json.dumps({"rule": _split_rule(samples), "rows": splits}, indent=1))
    summary = {
        "source": str(request.data), "kind": "CSV" if Path(request.data).is_file() else "labelled folder",
        "images": len(data.sources), "patients": len(set(data.groups)), "classes": data.classes,
        "unreadable": [name for name, _ in data.errors], "split_rule": _split_rule(samples),
        "patients_train": len({data.groups[i] for i in data.train}), "patients_val": len({data.groups[i] for i in data.val}),
        "counts": {c: {"train": int(np.sum(data.labels[data.train] == k)), "val": int(np.sum(data.labels[data.val] == k))}
                   for k, c in enumerate(data.classes)},
        "blocks": len(transformer_blocks(bundle.model.visual)), "base": _base_info(bundle),
    }
    (settings.work_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _split_rule(samples) -> str:
    if any(s.split for s in samples):
        return "given by the user (train/val), checked for patients on both sides."
    return ("by patient (DICOM PatientID, else StudyInstanceUID; photographs by CSV patient column, sub-folder or "
            "file name without its trailing number), stratified by class (scikit-learn StratifiedGroupKFold).")


def _base_info(bundle) -> dict[str, Any]:
    return {"name": bundle.info.name, "weights": bundle.info.weights, "demo": bundle.demo,
            "fingerprint": bundle.fingerprint}


def finish_run(request: FinetuneRequest, world: int, device: str, backend: str) -> dict[str, Any]:
    """Best epoch → temperature → model folder, metrics, plots, model card. Returns the metrics."""
    from burnscope.engines.model import load_biomedclip
    from burnscope.engines.model_folder import write_model_folder
    from burnscope.lifecycle.training.network import BurnClassifier
    from burnscope.lifecycle.training.report import build_metrics, model_card, write_metrics
    from burnscope.lifecycle.training.trainer import _amp_dtype
    from burnscope.operators.burn_severity.core import BurnHead

    settings = request.settings
    out = Path(settings.out_dir)
    work = settings.work_dir
    summary = json.loads((work / "summary.json").read_text())
    history = json.loads((work / "history.json").read_text())
    data = load_prepared(work)
    pre = json.loads((work / "preprocess.json").read_text())
    bundle = load_biomedclip(settings.model, config=settings.model_config)
    init = BurnHead.load(work / "head_init.json")
    net = BurnClassifier(bundle.model.visual, init.weights * init.logit_scale, init.bias)
    best = checkpoint.load_best(settings.checkpoint_dir)
    net.load_state_dict(best["model"])  # bundle.model.visual is now the fine-tuned tower
    net.eval()
    head = BurnHead(kind="fine-tuned", classes=list(data.classes),
                    weights=net.head.weight.detach().numpy().astype(np.float32),
                    bias=net.head.bias.detach().numpy().astype(np.float64), logit_scale=1.0,
                    metadata={"training": {"best_epoch": best["epoch"], "val": best.get("val")}})
    metrics = None
    if len(data.val):
        embeddings = _embed(net.embed, data.crops[data.val], pre["mean"], pre["std"])
        labels = [data.classes[i] for i in data.labels[data.val]]
        head.calibrate(embeddings, labels)
        metrics = build_metrics(head, embeddings, labels, [data.groups[i] for i in data.val])
    amp = _amp_dtype(device, settings.amp)
    training = {"epochs_run": len(history), "best_epoch": best["epoch"], "world": world, "backend": backend,
                "device": device, "amp": str(amp).replace("torch.", "") if amp is not None else None,
                "temperature": head.temperature, "blocks": summary["blocks"], "history": history}
    name = f"{summary['base']['name']} fine-tuned for burn depth"
    manifest = write_model_folder(out, bundle, bundle.model.state_dict(), head, {
        "name": name, "base": summary["base"], "classes": data.classes,
        "training": {k: v for k, v in training.items() if k != "history"}, "settings": settings_dict(settings),
    })
    zero_shot = json.loads((work / "zero_shot_val.json").read_text())
    if metrics is not None:
        metrics["model"] = {"name": name, "demo": summary["base"]["demo"]}
        write_metrics(out, metrics, zero_shot)
    card = model_card(name=name, base=summary["base"], data=summary, settings=settings_dict(settings), training=training,
                      metrics=metrics, zero_shot=zero_shot, manifest_files=manifest["files"])
    (out / "MODEL_CARD.md").write_text(card, encoding="utf-8")
    return {"metrics": metrics, "zero_shot": zero_shot, "training": training, "summary": summary}


def run_finetune(request: FinetuneRequest, on_progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """The whole run, in this process and ``request.nproc`` workers, or as one ``torchrun`` worker."""
    settings = request.settings
    Path(settings.out_dir).mkdir(parents=True, exist_ok=True)
    if distributed.under_torchrun():
        ctx = distributed.init_from_env()
        try:
            error = None
            if ctx.main:
                try:
                    prepare_run(request, on_progress)
                except ValueError as exc:
                    error = str(exc)
            error = distributed.broadcast_object(ctx, error)
            if error:
                raise DataError(error)
            settings.unfreeze_blocks = distributed.broadcast_object(ctx, settings.unfreeze_blocks)
            train_worker(ctx, settings)
            distributed.barrier(ctx)
            result = finish_run(request, ctx.world, ctx.device, ctx.backend) if ctx.main else {}
            distributed.barrier(ctx)
            return result
        finally:
            distributed.shutdown()
    prepare_run(request, on_progress)
    if request.nproc > 1:
        distributed.launch(request.nproc, train_worker, settings)
        from burnscope.lifecycle.training.distributed import _device

        device = _device(0)
        return finish_run(request, request.nproc, device, "nccl" if device.startswith("cuda") else "gloo")
    ctx = distributed.init(0, 1, 0, 1)
    train_worker(ctx, settings)
    return finish_run(request, 1, ctx.device, "")
