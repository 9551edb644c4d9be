"""A Triton Inference Server model repository of the image tower (``burnscope export-triton``).

Layout::

    REPO/<name>/config.pbtxt       platform onnxruntime_onnx, max_batch_size, dynamic batching
                                   (preferred batch sizes, max queue delay), instance groups
    REPO/<name>/1/model.onnx       the image tower: images [-1, 3, S, S] FP32 → embeddings [-1, D] FP32,
                                   L2-normalised (checked against torch at export)
    REPO/<name>/burn_head.json     the burn head to apply to the embeddings (classes, weights, temperature)

The head stays outside Triton on purpose: it is a 5×D matrix product, cheaper than a network hop,
and a site may retrain it without reloading the tower. ``config.pbtxt`` is written as text in
Triton's ``ModelConfig`` protobuf format (tests parse it with Triton's own ``model_config.proto``).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

KINDS = {"gpu": "KIND_GPU", "cpu": "KIND_CPU"}


@dataclass(frozen=True)
class TritonOptions:
    name: str = "burnscope_image_tower"
    max_batch_size: int = 64
    preferred_batch_sizes: tuple[int, ...] = (8, 32)
    max_queue_delay_us: int = 2000
    instances: int = 1
    kind: str = "gpu"

    def __post_init__(self) -> None:
        if not self.name or not all(c.isalnum() or c in "_-." for c in self.name):
            raise ValueError(f"model name {self.name!r}: letters, digits, '_', '-' and '.' only")
        if self.kind not in KINDS:
            raise ValueError(f"instance kind {self.kind!r}: one of {', '.join(KINDS)}")
        bad = [b for b in self.preferred_batch_sizes if not 1 <= b <= self.max_batch_size]
        if bad or not self.preferred_batch_sizes:
            raise ValueError(f"preferred batch sizes {list(self.preferred_batch_sizes)} must lie in 1…{self.max_batch_size}")


def config_pbtxt(options: TritonOptions, image_size: int, embed_dim: int) -> str:
    """The model configuration in protobuf text format."""
    preferred = ", ".join(str(b) for b in sorted(set(options.preferred_batch_sizes)))
    return f"""name: "{options.name}"
platform: "onnxruntime_onnx"
max_batch_size: {options.max_batch_size}
input [
  {{
    name: "images"
    data_type: TYPE_FP32
    dims: [ 3, {image_size}, {image_size} ]
  }}
]
output [
  {{
    name: "embeddings"
    data_type: TYPE_FP32
    dims: [ {embed_dim} ]
  }}
]
dynamic_batching {{
  preferred_batch_size: [ {preferred} ]
  max_queue_delay_microseconds: {options.max_queue_delay_us}
}}
instance_group [
  {{
    count: {options.instances}
    kind: {KINDS[options.kind]}
  }}
]
version_policy: {{ latest: {{ num_versions: 1 }} }}
"""


def export_triton(model: str | None, repo: str | Path, options: TritonOptions = TritonOptions(), *,
                  model_config: str = "biomedclip") -> Path:
    """Write the repository; returns the model's folder. The ONNX export is verified against torch."""
    from burnscope.engines.export import export_image_tower, onnx_files
    from burnscope.engines.model import load_biomedclip
    from burnscope.operators.burn_severity.core import load_head

    bundle = load_biomedclip(model, config=model_config)
    folder = Path(repo) / options.name
    version = folder / "1"
    version.mkdir(parents=True, exist_ok=True)
    cached = export_image_tower(bundle)  # checked against torch, cached per model fingerprint
    for file in onnx_files(cached):
        shutil.copyfile(file, version / file.name.replace(cached.name, "model.onnx"))
    if len(onnx_files(cached)) > 1:  # external weights: the graph names its data file
        import onnx

        proto = onnx.load(str(version / "model.onnx"), load_external_data=False)
        for tensor in proto.graph.initializer:
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = "model.onnx.data"
        onnx.save_model(proto, str(version / "model.onnx"))
    size = int(bundle.preprocess_cfg.get("image_size", 224))
    (folder / "config.pbtxt").write_text(config_pbtxt(options, size, bundle.embed_dim), encoding="utf-8")
    head = load_head(bundle)
    head.save(folder / "burn_head.json")
    (folder / "README.md").write_text(
        f"# {options.name}\n\nImage tower of {bundle.info.name} for Triton (ONNX Runtime backend).\n"
        + ("\n**DEMO MODEL (random weights) — not for clinical use.**\n" if bundle.demo else "")
        + "\nInput `images`: N×3×S×S FP32, BiomedCLIP-normalised (burnscope's preprocessing). Output `embeddings`: "
        "N×D FP32, L2-normalised. Apply `burn_head.json` (burnscope `BurnHead.load`) to get burn-depth findings.\n",
        encoding="utf-8",
    )
    (folder / "export.json").write_text(json.dumps({"model": bundle.info.name, "demo": bundle.demo,
                                                     "fingerprint": bundle.fingerprint}, indent=1))
    return folder
