"""INT8 post-training quantization of the image-tower ONNX (ONNX Runtime's quantizer).

Two kinds:

* **static Q/DQ** (:func:`quantize_static_image_tower`): QuantizeLinear/DequantizeLinear pairs
  with scales calibrated on real preprocessed images, signed symmetric INT8 activations and
  per-channel INT8 weights. This is the explicit-quantization form TensorRT builds INT8 engines
  from, and ONNX Runtime runs it on the CPU with integer kernels.
* **dynamic** (:func:`quantize_dynamic_image_tower`): INT8 weights, activation scales computed
  per batch at run time (no calibration; CPU only).

Which nodes get quantized is a *recipe* (:data:`RECIPES`). Quantizing every node of a ViT loses
too much: the attention-score and attention-value matmuls multiply two activations, softmax
outputs and post-GELU activations are heavy-tailed, and the patch embedding and projection head
set the embedding geometry. The recipes keep those in float and quantize the weight matmuls
(qkv, attention output, MLP) where the time is spent. :func:`evaluate_recipes` measures cosine
and zero-shot top-1 agreement against fp32 so the numbers, not habit, pick the default
(``DEFAULT_RECIPE``; see docs/engines.md for the measured table).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, Union

import numpy as np

from burnscope.engines import export

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recipe:
    """Which nodes to quantize and how (see module docstring)."""

    name: str
    description: str
    weight_matmuls_only: bool = True  # skip activation×activation matmuls (attention scores/values)
    exclude_patch_embed: bool = True
    exclude_head: bool = True  # the projection to the embedding space
    exclude_blocks: tuple[str, ...] = ()  # "first", "last"
    exclude_fc2: bool = False  # MLP output matmuls (their input is the heavy-tailed GELU output)
    calibrate_method: str = "MinMax"  # MinMax | Percentile | Entropy
    extra: dict[str, Any] = field(default_factory=dict)


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe("all", "every quantizable node (naive baseline)", weight_matmuls_only=False,
               exclude_patch_embed=False, exclude_head=False),
        Recipe("linear", "weight matmuls only (qkv, attn proj, MLP); patch embed, head, softmax, LayerNorm in float"),
        # Q/DQ on the matmul inputs only: the product leaves in float (ONNX Runtime fuses it into
        # MatMulIntegerToFloat; TensorRT's recommended placement), so no output requantization error.
        Recipe("linear-fp-out", "as 'linear' with float matmul outputs (Q/DQ on inputs only)",
               extra={"OpTypesToExcludeOutputQuantization": ["MatMul", "Gemm", "Conv"]}),
        Recipe("linear-percentile", "as 'linear', activation ranges from the 99.999th percentile",
               calibrate_method="Percentile"),
        Recipe("linear-no-fc2", "as 'linear' but MLP fc2 (post-GELU input) stays float", exclude_fc2=True),
        Recipe("linear-skip-ends", "as 'linear' but the first and last transformer blocks stay float",
               exclude_blocks=("first", "last")),
    )
}
#: Chosen by measured fidelity (cosine) and speed on the full-size tower (docs/engines.md).
DEFAULT_RECIPE = "linear-fp-out"
#: Stated bound of the tests: static INT8 (default recipe) vs fp32 on the tiny model.
TEST_MIN_COSINE = 0.98


class QuantizationError(RuntimeError):
    """Quantization could not run (no calibration images, bad model)."""


# ---------------------------------------------------------------------------------------------
# Node selection
# ---------------------------------------------------------------------------------------------
def _block_index(name: str) -> int | None:
    parts = name.split("/")
    for prev, part in zip(parts, parts[1:]):
        if prev == "blocks" and part.split(".")[0].isdigit():
            return int(part.split(".")[0])
        if prev.startswith("blocks.") and prev.split(".")[1].isdigit():
            return int(prev.split(".")[1])
    return None


def select_nodes(model_proto, recipe: Recipe) -> tuple[list[str], list[str], list[str]]:
    """(op types to quantize, node names to quantize, node names to exclude) for ``recipe``."""
    initializers = {t.name for t in model_proto.graph.initializer}
    constants = {o for n in model_proto.graph.node if n.op_type == "Constant" for o in n.output}
    weights = initializers | constants
    if not recipe.weight_matmuls_only:
        op_types = ["MatMul", "Conv", "Gemm", "Add", "Mul", "Softmax", "Gelu", "Transpose", "Reshape",
                    "LayerNormalization", "Concat", "Gather", "Slice", "Split"]
        return op_types, [n.name for n in model_proto.graph.node if n.op_type in op_types], []
    blocks = [b for b in (_block_index(n.name) for n in model_proto.graph.node) if b is not None]
    first, last = (min(blocks), max(blocks)) if blocks else (None, None)
    include, exclude = [], []
    for node in model_proto.graph.node:
        if node.op_type not in ("MatMul", "Gemm", "Conv"):
            continue
        name = node.name
        lowered = name.lower()
        block = _block_index(name)
        reasons = []
        if node.op_type in ("MatMul", "Gemm") and not any(i in weights for i in node.input):
            reasons.append("activation matmul")
        if recipe.exclude_patch_embed and (node.op_type == "Conv" or "patch_embed" in lowered):
            reasons.append("patch embedding")
        if recipe.exclude_head and ("/head/" in lowered or (block is None and node.op_type != "Conv")):
            reasons.append("projection head")
        if recipe.exclude_fc2 and "fc2" in lowered:
            reasons.append("mlp fc2")
        if block is not None and (("first" in recipe.exclude_blocks and block == first) or ("last" in recipe.exclude_blocks and block == last)):
            reasons.append("first/last block")
        (exclude if reasons else include).append(name)
    return ["MatMul", "Gemm", "Conv"], include, exclude


# ---------------------------------------------------------------------------------------------
# Calibration data
# ---------------------------------------------------------------------------------------------
class ImageCalibrationReader:
    """onnxruntime ``CalibrationDataReader`` over a preprocessed N×3×S×S batch."""

    def __init__(self, images: np.ndarray, input_name: str = "images", batch: int = 1):
        from onnxruntime.quantization import CalibrationDataReader

        # Subclassing at run time keeps onnxruntime an import of this function, not of the module.
        self.__class__ = type("ImageCalibrationReader", (ImageCalibrationReader, CalibrationDataReader), {})
        self.images = np.asarray(images, np.float32)
        self.input_name = input_name
        self.batch = max(1, int(batch))
        self._next = 0

    def get_next(self):
        if self._next >= len(self.images):
            return None
        chunk = self.images[self._next : self._next + self.batch]
        self._next += self.batch
        return {self.input_name: chunk}

    def rewind(self) -> None:
        self._next = 0

    def __len__(self) -> int:
        return -(-len(self.images) // self.batch)


#: Calibration input of static INT8: preprocessed N×3×S×S float32 images, or a zero-argument
#: callable returning them (burnscope.operators.preprocess.calibration makes both from folders).
Calibration = Union[np.ndarray, Callable[[], np.ndarray]]


def calibration_images(calibration: Calibration | None) -> np.ndarray:
    """The calibration batch as an array; a QuantizationError when there is none."""
    if calibration is None:
        raise QuantizationError(
            "static INT8 needs calibration images: pass calibration= (for example "
            "burnscope.operators.preprocess.calibration.calibration_for(bundle.config, FOLDER))"
        )
    try:
        images = calibration() if callable(calibration) else calibration
    except ValueError as exc:  # no decodable image in the folders
        raise QuantizationError(str(exc)) from None
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or len(images) == 0:
        raise QuantizationError(f"no decodable calibration images (got an array of shape {images.shape})")
    return images


# ---------------------------------------------------------------------------------------------
# Quantization
# ---------------------------------------------------------------------------------------------
def _preprocessed(fp32_path: Path, workdir: Path) -> Path:
    """Shape inference + graph clean-up before quantizing (what onnxruntime recommends)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = workdir / "prep.onnx"
    try:
        source = fp32_path
        if len(export.onnx_files(fp32_path)) > 1:
            # quant_pre_process loses external data while optimising; give it one inline file
            # (the image tower is far below protobuf's 2 GB limit).
            import onnx

            source = workdir / "inline.onnx"
            onnx.save_model(onnx.load(str(fp32_path)), str(source))
        quant_pre_process(str(source), str(out), skip_symbolic_shape=True, save_as_external_data=False)
        return out
    except Exception as exc:  # pre-processing is an optimisation; quantize the raw export instead
        log.info("quant_pre_process failed (%s); quantizing the export as is", exc)
        return fp32_path


def _meta_matches(path: Path, key: dict[str, Any]) -> bool:
    meta = path.with_suffix(".json")
    if not (path.exists() and meta.exists()):
        return False
    try:
        return json.loads(meta.read_text()).get("key") == key
    except ValueError:
        return False


def _finish(tmp_out: Path, path: Path, key: dict[str, Any], extra: dict[str, Any]) -> Path:
    import onnx

    model = onnx.load(str(tmp_out))
    onnx.checker.check_model(model)
    # Saved under its final name inside the temp dir: the external-data location written into
    # the graph is the side file's name, so both files must be moved together unchanged.
    staged = export.save_onnx(model, tmp_out.with_name(path.name))
    for file in export.onnx_files(staged):
        os.replace(file, path.with_name(file.name))
    counts: dict[str, int] = {}
    for node in model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    meta = {"key": key, "ops": {k: counts[k] for k in sorted(counts)}, **extra}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2))
    return path


def quantize_static_image_tower(
    bundle,
    calibration: Calibration | None = None,
    recipe: str | Recipe = DEFAULT_RECIPE,
    path: str | os.PathLike | None = None,
    force: bool = False,
) -> Path:
    """A static Q/DQ INT8 image tower (cached per fingerprint + recipe + calibration set)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    recipe = RECIPES[recipe] if isinstance(recipe, str) else recipe
    fp32 = export.export_image_tower(bundle)
    images = calibration_images(calibration)
    calib_hash = _array_digest(images)
    key = {"fingerprint": bundle.fingerprint, "recipe": recipe.name, "calibration": calib_hash, "kind": "static-qdq"}
    path = Path(path) if path else export.onnx_path(bundle, "image", f"int8-{recipe.name}-{calib_hash}")
    if not force and _meta_matches(path, key):
        return path
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        workdir = Path(tmp)
        prepared = _preprocessed(fp32, workdir)
        import onnx

        op_types, include, exclude = select_nodes(onnx.load(str(prepared), load_external_data=False), recipe)
        out = workdir / "int8.onnx"
        quantize_static(
            str(prepared),
            str(out),
            # Histogram calibrators stack every batch's activations: they need equal batch shapes.
            ImageCalibrationReader(images, "images", batch=8 if recipe.calibrate_method == "MinMax" else 1),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=op_types,
            nodes_to_quantize=include or None,
            nodes_to_exclude=exclude,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=getattr(CalibrationMethod, recipe.calibrate_method),
            extra_options={
                "ActivationSymmetric": True,  # TensorRT's explicit quantization expects symmetric INT8
                "WeightSymmetric": True,
                "CalibMovingAverage": recipe.calibrate_method == "MinMax",
                "CalibPercentile": 99.999,
                **recipe.extra,
            },
        )
        _finish(out, path, key, {"recipe": recipe.description, "quantized_nodes": len(include),
                                 "excluded_nodes": len(exclude), "calibration_images": int(len(images)),
                                 "seconds": round(time.perf_counter() - started, 1)})
    log.info("static INT8 (%s) image tower: %s", recipe.name, path)
    return path


def quantize_dynamic_image_tower(bundle, path: str | os.PathLike | None = None, force: bool = False) -> Path:
    """Dynamic INT8 (weights INT8 per channel, activations quantized per batch); CPU-only format."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32 = export.export_image_tower(bundle)
    key = {"fingerprint": bundle.fingerprint, "kind": "dynamic"}
    path = Path(path) if path else export.onnx_path(bundle, "image", "int8-dynamic")
    if not force and _meta_matches(path, key):
        return path
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        workdir = Path(tmp)
        prepared = _preprocessed(fp32, workdir)
        _, include, exclude = select_nodes(onnx.load(str(prepared), load_external_data=False), RECIPES["linear"])
        out = workdir / "int8.onnx"
        quantize_dynamic(
            str(prepared), str(out), op_types_to_quantize=["MatMul"], nodes_to_exclude=exclude,
            per_channel=True, weight_type=QuantType.QInt8,
        )
        _finish(out, path, key, {"excluded_nodes": len(exclude), "seconds": round(time.perf_counter() - started, 1)})
    return path


def _array_digest(images: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(images, np.float32).tobytes()).hexdigest()[:10]


# ---------------------------------------------------------------------------------------------
# Fidelity
# ---------------------------------------------------------------------------------------------
def qdq_counts(path: str | os.PathLike) -> dict[str, int]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    ops = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger")
    return {op: sum(n.op_type == op for n in model.graph.node) for op in ops}


def run_onnx(path: str | os.PathLike, images: np.ndarray, batch: int = 8, threads: int | None = None) -> np.ndarray:
    session = export.ort_session(path, threads)
    name = session.get_inputs()[0].name
    chunks = [session.run(None, {name: images[i : i + batch]})[0] for i in range(0, len(images), batch)]
    return np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)


def fidelity(reference: np.ndarray, candidate: np.ndarray, class_embeddings: np.ndarray | None = None) -> dict[str, float]:
    """cosine_min, cosine_mean and (with class text embeddings) zero-shot top-1 agreement."""
    from burnscope.engines.base import l2_normalize

    reference, candidate = l2_normalize(reference), l2_normalize(candidate)
    cos = np.sum(reference * candidate, axis=1)
    result = {"cosine_min": float(cos.min()), "cosine_mean": float(cos.mean())}
    if class_embeddings is not None:
        classes = l2_normalize(class_embeddings)
        result["top1_agreement"] = float(np.mean(np.argmax(reference @ classes.T, 1) == np.argmax(candidate @ classes.T, 1)))
    return result


def evaluate_recipes(
    bundle,
    images: np.ndarray,
    recipes: Sequence[str] = tuple(RECIPES),
    calib_images: np.ndarray | None = None,
    class_embeddings: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """Fidelity of each recipe (and dynamic INT8) against the fp32 export on ``images``."""
    reference = run_onnx(export.export_image_tower(bundle), images)
    rows = []
    for name in recipes:
        path = quantize_static_image_tower(bundle, calib_images if calib_images is not None else images, recipe=name)
        rows.append({"recipe": name, "kind": "static-qdq", **fidelity(reference, run_onnx(path, images), class_embeddings)})
    path = quantize_dynamic_image_tower(bundle)
    rows.append({"recipe": "dynamic", "kind": "dynamic", **fidelity(reference, run_onnx(path, images), class_embeddings)})
    return rows
