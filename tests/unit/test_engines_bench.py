"""Engine benchmark (tiny model, CPU) and the CPU-runnable parts of the GPU script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from burnscope.benchmarks import engines as bench  # noqa: E402
from burnscope.benchmarks import gpu as gpu_bench  # noqa: E402
from burnscope.engines.model import load_biomedclip  # noqa: E402


@pytest.fixture(scope="module")
def result():
    torch.set_num_threads(1)
    bundle = load_biomedclip(config="biomedclip-tiny")
    folders = [Path(pytest.importorskip("skimage.data").__file__).parent]  # scikit-image's photographs
    cases = [bench.Case("torch", "fp32", "cpu"), bench.Case("onnxruntime", "fp32", "cpu", opts={"intra_op_threads": 1})]
    return bench.run_bench(bundle=bundle, cases=cases, batches=(1, 2), images=folders, repeat=3, max_images=6)


def test_bench_rows_have_the_documented_keys(result):
    rows = result["rows"]
    assert [(r["backend"], r["batch"]) for r in rows] == [("torch", 1), ("torch", 2), ("onnxruntime", 1), ("onnxruntime", 2)]
    for row in rows:
        assert set(bench.ROW_KEYS) <= set(row)
        assert row["p50_ms"] > 0 and row["p95_ms"] >= row["p50_ms"] and row["images_per_s"] > 0
        assert row["peak_mem_mb"] > 50  # host RSS of a process holding torch + the model
        assert 0.9999 <= row["cosine_mean"] <= 1.0001 and row["top1_agreement"] == 1.0
    assert result["meta"]["demo"] and result["meta"]["images"] == 6
    ratios = bench.speedups(rows)
    assert ratios[("torch", "fp32", "cpu", 1)] == 1.0
    table = bench.markdown_table(rows)
    assert table.count("\n") == len(rows) + 1 and "| onnxruntime | fp32 | cpu | 2 |" in table
    json.dumps(result, default=str)  # serialisable as written by --json


def test_fidelity_and_tile():
    ref = np.eye(3, 4, dtype=np.float32)
    classes = np.eye(2, 4, dtype=np.float32)
    same = bench.fidelity(ref, ref, classes)
    assert same["cosine_min"] == pytest.approx(1.0) and same["top1_agreement"] == 1.0
    flipped = bench.fidelity(ref[:2], ref[[1, 0]], classes)
    assert flipped["cosine_mean"] == pytest.approx(0.0) and flipped["top1_agreement"] == 0.0
    assert bench.tile(np.arange(3)[:, None], 7)[:, 0].tolist() == [0, 1, 2, 0, 1, 2, 0]


def test_cpu_cases_and_class_embeddings():
    cases = bench.available_cases(device="cpu")
    torch_rows = [("torch", "fp32")] + ([("torch", "bf16")] if bench.cpu_has_bf16() else [])
    assert [(c.backend, c.precision) for c in cases] == torch_rows + [("onnxruntime", "fp32"), ("onnxruntime", "int8"),
                                                                      ("onnxruntime", "int8-dynamic")]
    assert [c.precision for c in bench.available_cases(["onnxruntime"], "cpu", ["int8"])] == ["int8"]
    bundle = load_biomedclip(config="biomedclip-tiny")
    classes, names, source = bench.class_embeddings(bundle)
    assert classes.shape == (len(names), bundle.embed_dim)
    np.testing.assert_allclose(np.linalg.norm(classes, axis=1), 1.0, atol=1e-5)


def test_gpu_script_cpu_parts():
    assert gpu_bench.parse_batches("256,1,8") == (1, 8, 256)
    with pytest.raises(Exception):
        gpu_bench.parse_batches("0,8")
    cases = gpu_bench.gpu_cases(("fp16", "bf16"), have_ort_cuda=True, have_tensorrt=False)
    assert [(c.backend, c.precision, c.device) for c in cases] == [("torch", "fp16", "cuda"), ("torch", "bf16", "cuda"),
                                                                   ("onnxruntime", "fp32", "cuda")]
    rows = [
        {"backend": "torch", "precision": "fp16", "device": "cuda", "batch": 1, "p50_ms": 1.2, "p95_ms": 1.3,
         "images_per_s": 833.0, "peak_mem_mb": 500, "cosine_min": 0.999, "cosine_mean": 0.9995, "top1_agreement": 1.0},
        {"backend": "torch", "precision": "fp16", "device": "cuda", "batch": 256, "p50_ms": 30.0, "p95_ms": 31.0,
         "images_per_s": 8533.3, "peak_mem_mb": 900, "cosine_min": 0.999, "cosine_mean": 0.9995, "top1_agreement": 1.0},
    ]
    targets = gpu_bench.check_targets(rows)
    assert targets["fp16_large_batch_ok"] and targets["batch1_ok"] and targets["fp16_best_at"] == "torch batch 256"
    assert not gpu_bench.check_targets(rows[:1])["fp16_large_batch_ok"]
    text = gpu_bench.render_markdown({"rows": rows, "targets": targets, "environment": {"gpu": "NVIDIA H100"},
                                      "meta": {"demo": True}})
    assert "DEMO MODEL" in text and "met" in text and "| torch | fp16 | cuda | 256 |" in text


def test_gpu_script_runs_without_a_gpu(tmp_path):
    """From any folder it writes its report and says why nothing ran."""
    env = {"BURNSCOPE_DEVICE": "cpu", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "burnscope.benchmarks.gpu", "--out", str(tmp_path), "--no-preprocess"],
                          capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "engines-gpu.json").read_text())
    assert result["rows"] == [] and any("no CUDA GPU" in e for e in result["errors"])
    assert (tmp_path / "engines-gpu.md").read_text().startswith("# BiomedCLIP image tower on the GPU")
