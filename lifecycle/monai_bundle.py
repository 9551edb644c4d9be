"""A burnscope model as a MONAI Bundle (``burnscope export-bundle``), and the pieces its configs use.

Layout written by :func:`export_bundle`::

    configs/metadata.json    MONAI bundle metadata (meta_schema_20240725): versions, task, network_data_format ...
    configs/inference.json   `python -m monai.bundle run --config_file configs/inference.json` (run in the bundle
                             folder, or with --bundle_root): a folder of images → one findings JSON per image
    models/                  a burnscope model folder (engines/model_folder.py): weights, head, config, manifest
    docs/README.md           what the bundle does, how to run it, its inputs and outputs, the limits of use
    LICENSE                  licence notes (burnscope Apache-2.0; BiomedCLIP MIT with its out-of-scope clause)

``network_def`` is :class:`BurnClassifierNet`: N×3×224×224 BiomedCLIP-normalised images → N×C
calibrated class probabilities. It loads its weights from ``models/`` itself (hash-checked by
the manifest), so no separate ``model.pt`` duplicates them. ``-m BUNDLE_DIR`` works in every
burnscope command: the model loader looks into ``models/``.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from burnscope.engines import model_folder as mf

log = logging.getLogger(__name__)

SCHEMA_URL = "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20240725.json"
REFERENCES = [
    "Zhang S, Xu Y, Usuyama N, et al. A Multimodal Biomedical Foundation Model Trained from Fifteen Million "
    "Image–Text Pairs. NEJM AI 2025;2(1). https://doi.org/10.1056/AIoa2400640",
]


class BurnClassifierNet(torch.nn.Module):
    """MONAI ``network_def``: images (N×3×S×S, normalised as BiomedCLIP expects) → class probabilities
    ``softmax((W · normalize(visual(x)) + b) / T)`` (N×C) of the model folder's burn head."""

    def __init__(self, model_dir: str):
        super().__init__()
        from burnscope.operators.burn_severity.core import BurnHead

        folder = mf.model_dir_of(model_dir)
        bundle = mf.load_model_folder(folder)
        head = BurnHead.load(folder / mf.HEAD)
        self.visual = bundle.model.visual
        self.classes = list(head.classes)
        self.abstain_threshold = float(head.abstain_threshold)
        self.demo = bundle.demo
        self.model_name = bundle.info.name
        self.preprocess_cfg = dict(bundle.preprocess_cfg)
        weights = torch.as_tensor(np.asarray(head.weights, np.float64) * head.logit_scale / head.temperature)
        self.linear = torch.nn.Linear(weights.shape[1], weights.shape[0])
        with torch.no_grad():
            self.linear.weight.copy_(weights.float())
            self.linear.bias.copy_(torch.as_tensor(np.asarray(head.bias) / head.temperature, dtype=torch.float32))
        self.eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        embeddings = torch.nn.functional.normalize(self.visual(images), dim=-1)
        return torch.softmax(self.linear(embeddings), dim=-1)


class FolderInference:
    """The bundle's inference run: every image under ``input_dir`` (DICOM frames, JPEG, PNG, ...)
    → ``output_dir/<relative path>.finding.json`` and one line per image in ``findings.jsonl``."""

    def __init__(self, network: BurnClassifierNet, input_dir: str, output_dir: str, batch_size: int = 8,
                 device: Any = "cpu"):
        self.network, self.input_dir, self.output_dir = network, Path(input_dir), Path(output_dir)
        self.batch_size, self.device = int(batch_size), device

    def run(self) -> int:
        from burnscope.operators.dicom_loader.files import is_image_file, read_rgb_frames
        from burnscope.common.messages import DEMO_BANNER
        from burnscope.operators.preprocess.core import Preprocessor

        if not self.input_dir.is_dir():
            raise FileNotFoundError(f"input_dir {self.input_dir} is not a folder (override with --input_dir DIR)")
        files = sorted(p for p in self.input_dir.rglob("*") if p.is_file() and is_image_file(p))
        preprocessor = Preprocessor.from_config(self.network.preprocess_cfg, device="cpu")
        self.output_dir.mkdir(parents=True, exist_ok=True)
        records, errors = [], []
        for path in files:
            try:
                frames = read_rgb_frames(path)
            except Exception as exc:  # one bad file never stops the run; it is listed
                errors.append({"file": str(path.relative_to(self.input_dir)), "error": str(exc)})
                continue
            for start in range(0, len(frames), self.batch_size):
                chunk = frames[start : start + self.batch_size]
                with torch.no_grad():
                    x = torch.as_tensor(preprocessor([img for _, img in chunk])).to(self.device)
                    probs = self.network(x).float().cpu().numpy()
                for (name, _), row in zip(chunk, probs):
                    top = int(row.argmax())
                    abstained = float(row[top]) < self.network.abstain_threshold
                    records.append({
                        "file": str(path.relative_to(self.input_dir)), "image": name,
                        "label": "needs_review" if abstained else self.network.classes[top],
                        "confidence": float(row[top]), "abstained": abstained,
                        "probabilities": {c: float(p) for c, p in zip(self.network.classes, row)},
                        "model": self.network.model_name, "demo": self.network.demo,
                        **({"warning": DEMO_BANNER} if self.network.demo else {}),
                    })
        for record in records:
            target = self.output_dir / f"{record['image'].replace('#', '-frame')}.finding.json"
            target = self.output_dir / Path(record["file"]).parent / target.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(record, indent=1), encoding="utf-8")
        with (self.output_dir / "findings.jsonl").open("w", encoding="utf-8") as handle:
            for record in records + errors:
                handle.write(json.dumps(record) + "\n")
        if self.network.demo:
            log.warning("%s: findings of the demo model", DEMO_BANNER)
        return len(records)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("burnscope", "open_clip_torch", "timm", "transformers", "safetensors", "pydicom", "pillow", "scipy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def _value_range(cfg: dict[str, Any]) -> list[float]:
    mean, std = np.asarray(cfg["mean"]), np.asarray(cfg["std"])
    return [round(float(np.min(-mean / std)), 4), round(float(np.max((1 - mean) / std)), 4)]


def metadata(manifest: dict[str, Any], cfg: dict[str, Any], head: Any, version: str) -> dict[str, Any]:
    """``configs/metadata.json`` with the fields of MONAI's meta schema (20240725)."""
    import monai

    base = manifest.get("base") or {}
    size = int(cfg.get("preprocess_cfg", {}).get("image_size", 224))
    demo = bool(base.get("demo"))
    training = manifest.get("training")
    metrics_file = manifest.get("metrics") or {}
    return {
        "schema": SCHEMA_URL,
        "version": version,
        "changelog": {version: "exported by burnscope export-bundle"},
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": np.__version__,
        "required_packages_version": _versions(),
        "name": manifest.get("name") or cfg["name"],
        "task": "Burn-depth classification of clinical photographs (decision support for trained clinicians)",
        "description": (
            ("DEMO MODEL (random weights) — not for clinical use. " if demo else "")
            + "BiomedCLIP image tower with a burn-depth head over " + ", ".join(head.classes)
            + (f"; fine-tuned by burnscope ({training.get('epochs_run')} epochs)." if training else "; zero-shot prompt head.")
        ),
        "authors": "burnscope contributors",
        "copyright": "Copyright (c) burnscope contributors; BiomedCLIP weights (c) Microsoft (MIT)",
        "data_source": "the site's own labelled burn photographs (see models/MODEL_CARD.md)" if training
        else "none: zero-shot prompts, no training images",
        "data_type": "dicom, jpeg, png, tiff, bmp",
        "image_classes": f"RGB clinical photograph, resized (shortest side {size}, bicubic) and centre-cropped to "
        f"{size}x{size}, normalised with BiomedCLIP's mean and std",
        "pred_classes": ", ".join(head.classes) + "; below the abstain threshold the finding is needs_review",
        "eval_metrics": metrics_file,
        "intended_use": "Research and decision support for trained clinicians; not a diagnosis, not a medical device. "
        "BiomedCLIP's model card puts any deployed use out of scope.",
        "references": REFERENCES,
        "network_data_format": {
            "inputs": {"image": {
                "type": "image", "format": "RGB", "num_channels": 3, "spatial_shape": [size, size],
                "dtype": "float32", "value_range": _value_range(cfg["preprocess_cfg"]), "is_patch_data": False,
                "channel_def": {"0": "R", "1": "G", "2": "B"},
            }},
            "outputs": {"pred": {
                "type": "probabilities", "format": "classes", "num_channels": len(head.classes), "spatial_shape": [1],
                "dtype": "float32", "value_range": [0, 1], "is_patch_data": False,
                "channel_def": {str(i): c for i, c in enumerate(head.classes)},
            }},
        },
    }


INFERENCE_CONFIG: dict[str, Any] = {
    "imports": ["$import torch", "$import burnscope.lifecycle.monai_bundle"],
    "bundle_root": ".",
    "model_dir": "$@bundle_root + '/models'",
    "input_dir": "$@bundle_root + '/input'",
    "output_dir": "$@bundle_root + '/eval'",
    "batch_size": 8,
    "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
    "network_def": {"_target_": "burnscope.lifecycle.monai_bundle.BurnClassifierNet", "model_dir": "@model_dir"},
    "network": "$@network_def.to(@device)",
    "inferer": {
        "_target_": "burnscope.lifecycle.monai_bundle.FolderInference", "network": "@network",
        "input_dir": "@input_dir", "output_dir": "@output_dir", "batch_size": "@batch_size", "device": "@device",
    },
    "run": ["$@inferer.run()"],
}


def _readme(meta: dict[str, Any], demo: bool) -> str:
    io = meta["network_data_format"]
    return "\n".join([
        f"# {meta['name']}", "",
        *(["> **DEMO MODEL (random weights) — not for clinical use.**", ""] if demo else []),
        meta["description"], "",
        "## Run", "",
        "```bash",
        "cd BUNDLE_DIR",
        "python -m monai.bundle run --config_file configs/inference.json --input_dir IMAGES --output_dir FINDINGS",
        "```", "",
        "Every image under `IMAGES` (DICOM, every frame; JPEG, PNG, TIFF, BMP) gives `FINDINGS/<path>.finding.json` "
        "(label or `needs_review`, calibrated probabilities, confidence); `findings.jsonl` lists them all and the files "
        "that could not be read. burnscope must be installed (`pip install burnscope`). The same folder works as "
        "`burnscope run burn-triage -m BUNDLE_DIR` and in every other burnscope command.", "",
        "## Network", "",
        f"* input `image`: {io['inputs']['image']['num_channels']}×{'×'.join(map(str, io['inputs']['image']['spatial_shape']))} "
        f"float32, {meta['image_classes']}",
        f"* output `pred`: {io['outputs']['pred']['num_channels']} class probabilities ({meta['pred_classes']})", "",
        "## Intended use and licence", "",
        meta["intended_use"], "See `LICENSE` and, for a fine-tuned model, `models/MODEL_CARD.md`.", "",
    ])


LICENSE_TEXT = """burnscope code and these configs: Apache License 2.0.

Model weights: BiomedCLIP (microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224), MIT License,
Copyright (c) Microsoft Corporation. A fine-tuned model is a derivative of those weights.

BiomedCLIP's model card states that any deployed use case of the model - commercial or otherwise - is
currently out of scope, and discourages its use for automated diagnosis or in a medical device. This
bundle inherits that limit: research and evaluation only, not production care without your own
validation, governance and regulatory assessment.

This bundle is not a medical device. Images used to fine-tune it remain under their owner's terms.
"""


def export_bundle(model: str | None, out_dir: str | Path, *, model_config: str = "biomedclip", version: str = "0.1.0") -> Path:
    """Write the MONAI bundle of ``model`` (a model folder, a bundle, weights, or the demo model)."""
    from burnscope.engines.model import load_biomedclip
    from burnscope.operators.burn_severity.core import BurnHead, zero_shot_head

    out = Path(out_dir)
    models = out / mf.BUNDLE_MODELS
    models.mkdir(parents=True, exist_ok=True)
    source = mf.find_model_folder(model)
    if source is not None:
        if source.resolve() != models.resolve():
            manifest = mf.read_manifest(source, verify=True)
            for name in [*manifest["files"], mf.MANIFEST]:
                shutil.copy2(source / name, models / name)
            for extra in ("MODEL_CARD.md", "metrics.json"):
                if (source / extra).is_file():
                    shutil.copy2(source / extra, models / extra)
    else:
        bundle = load_biomedclip(model, config=model_config)
        info = {"name": f"{bundle.info.name} (zero-shot burn head)", "classes": None,
                "base": {"name": bundle.info.name, "weights": bundle.info.weights, "demo": bundle.demo,
                         "fingerprint": bundle.fingerprint}}
        mf.write_model_folder(models, bundle, bundle.model.state_dict(), zero_shot_head(bundle), info)
    manifest = mf.read_manifest(models, verify=True)
    cfg = json.loads((models / mf.CONFIG).read_text())
    head = BurnHead.load(models / mf.HEAD)
    if (models / "metrics.json").is_file():
        val = json.loads((models / "metrics.json").read_text()).get("validation") or {}
        manifest["metrics"] = {k: val[k] for k in ("accuracy", "macro_f1", "ece") if k in val}
    meta = metadata(manifest, cfg, head, version)
    (out / "configs").mkdir(parents=True, exist_ok=True)
    (out / "docs").mkdir(parents=True, exist_ok=True)
    (out / "configs" / "metadata.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    (out / "configs" / "inference.json").write_text(json.dumps(INFERENCE_CONFIG, indent=2), encoding="utf-8")
    (out / "docs" / "README.md").write_text(_readme(meta, bool((manifest.get("base") or {}).get("demo"))), encoding="utf-8")
    (out / "LICENSE").write_text(LICENSE_TEXT, encoding="utf-8")
    return out
