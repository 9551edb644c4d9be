"""burnscope finetune on the tiny architecture, CPU, gloo: DDP equivalence, resume, bad input, outputs.

The runs are shared by the tests of this module (module-scoped fixtures): one single-process run
and one two-process run of the same settings, two epochs each, on a generated dataset of five
visibly different classes (3 patients × 2 photographs each).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fixtures.burn_images import write_dataset
from fixtures import REPO

COMMON = ["--model-config", "biomedclip-tiny", "--epochs", "2", "--unfreeze-blocks", "1", "--batch-size", "8",
          "--lr-head", "0.05", "--lr-tower", "1e-4", "-q"]


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BURNSCOPE_CACHE", str(root / "cache"))
        write_dataset(root / "data", patients_per_class=3, images_per_patient=2)
        write_dataset(root / "held_out", patients_per_class=2, images_per_patient=1, seed=7, first_patient=100)
        yield root


def _cli(args: list[str]) -> int:
    import torch

    from burnscope.applications.cli import main

    threads = torch.get_num_threads()
    try:
        return main(args)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def single(space):
    out = space / "single"
    assert _cli(["finetune", str(space / "data"), "-o", str(out), *COMMON, "--sync-check", "step"]) == 0
    return out


@pytest.fixture(scope="module")
def ddp(space):
    out = space / "ddp"
    assert _cli(["finetune", str(space / "data"), "-o", str(out), *COMMON, "--nproc", "2", "--sync-check", "step"]) == 0
    return out


def _events(out: Path, kind: str) -> list[dict]:
    lines = (out / "train_log.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == kind]


def _weights(out: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(out / "open_clip_model.safetensors"))


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


# ------------------------------------------------------------------------------------------ DDP


def test_parameters_identical_on_both_ranks_after_every_step(ddp):
    syncs = _events(ddp, "sync")
    steps = _events(ddp, "step")
    assert len(syncs) == len(steps) == 6  # 22 training images, global batch 8: 3 steps, 2 epochs
    for event in syncs:
        assert len(event["digests"]) == 2 and event["digests"][0] == event["digests"][1]
    assert len({e["digests"][0] for e in syncs}) == len(syncs)  # the parameters did change every step


def test_two_processes_equal_one_process_with_the_same_global_batch(single, ddp):
    import torch

    for epoch_file in ("epoch-001.pt", "epoch-002.pt"):
        a = torch.load(single / "checkpoints" / epoch_file, weights_only=True)["model"]
        b = torch.load(ddp / "checkpoints" / epoch_file, weights_only=True)["model"]
        assert _max_diff(a, b) < 1e-5, epoch_file
    assert _max_diff(_weights(single), _weights(ddp)) < 1e-5
    history_1 = [e["val"] for e in _events(single, "epoch")]
    history_2 = [e["val"] for e in _events(ddp, "epoch")]
    for v1, v2 in zip(history_1, history_2, strict=True):
        assert v1["macro_f1"] == v2["macro_f1"] and v1["loss"] == pytest.approx(v2["loss"], abs=1e-5)
    manifest = json.loads((ddp / "manifest.json").read_text())
    assert manifest["training"]["world"] == 2 and manifest["training"]["backend"] == "gloo"


# ----------------------------------------------------------------------------------- the model


def test_finetuned_model_beats_zero_shot_on_held_out_patients(space, single):
    held = space / "held_out"
    fine, zero = space / "fine.json", space / "zero.json"
    assert _cli(["evaluate", str(held), "-m", str(single), "--json", str(fine)]) == 0
    assert _cli(["evaluate", str(held), "--model-config", "biomedclip-tiny", "--json", str(zero)]) == 0
    fine_m, zero_m = json.loads(fine.read_text()), json.loads(zero.read_text())
    assert fine_m["head"].startswith("fine-tuned") and zero_m["head"].startswith("zero-shot")
    assert fine_m["n_images"] == zero_m["n_images"] == 10
    assert fine_m["accuracy"] >= 0.6 and fine_m["macro_f1"] > zero_m["macro_f1"] + 0.25


def test_output_folder_is_a_complete_model_folder_with_report_and_card(single):
    from burnscope.engines.model_folder import read_manifest

    manifest = read_manifest(single, verify=True)
    assert {"open_clip_model.safetensors", "head.json", "model_config.json", "prompt_embeddings.npz",
            "vocab.txt"} <= set(manifest["files"])
    assert manifest["base"]["demo"] is True
    metrics = json.loads((single / "metrics.json").read_text())["validation"]
    assert {"precision", "recall", "f1", "precision_ci", "recall_ci"} <= set(metrics["per_class"]["full_thickness"])
    rows = json.loads((single / "splits.json").read_text())["rows"]
    assert np.array(metrics["confusion_matrix"]).sum() == metrics["n_images"] == sum(r["split"] == "val" for r in rows)
    assert 0 <= metrics["ece"] <= 1 and metrics["ci95"]["macro_f1"][0] <= metrics["macro_f1"] + 1e-9
    for png in ("reliability_diagram.png", "confusion_matrix.png"):
        assert (single / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    card = (single / "MODEL_CARD.md").read_text()
    for needed in ("DEMO MODEL (random weights)", "Not a medical device", "95 % CI", "out of scope",
                   "No patient is on both sides", "MIT"):
        assert needed in card, needed
    train = {r["group"] for r in rows if r["split"] == "train"}
    val = {r["group"] for r in rows if r["split"] == "val"}
    assert train and val and not train & val
    assert all(len(r["group"]) == 16 for r in rows)  # hashed keys, never a PatientID


def test_output_folder_drives_burn_triage(space, single):
    out = space / "triage"
    assert _cli(["run", "burn-triage", "-i", str(REPO / "sample_data" / "study-001"), "-o", str(out),
                 "-m", str(single), "-q"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reports"] >= 1 and summary["model"]["demo"] is True
    assert "fine-tuned" in summary["model"]["name"] and "DEMO MODEL" in summary["warning"]


def test_a_changed_model_file_is_refused(space, single):
    from burnscope.engines.model import load_biomedclip
    from burnscope.engines.model_folder import ModelFolderError

    copy = space / "tampered"
    shutil.copytree(single, copy, ignore=shutil.ignore_patterns("checkpoints", "work"))
    head = json.loads((copy / "head.json").read_text())
    head["bias"][0] += 1.0
    (copy / "head.json").write_text(json.dumps(head))
    with pytest.raises(ModelFolderError, match="head.json does not match"):
        load_biomedclip(str(copy))


# -------------------------------------------------------------------------------------- resume


def test_run_killed_mid_epoch_resumes_to_the_same_result(space, single):
    out = space / "killed"
    env = dict(os.environ, BURNSCOPE_CACHE=str(space / "cache"))
    cmd = [sys.executable, "-m", "burnscope.applications.cli", "finetune", str(space / "data"), "-o", str(out), *COMMON]
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log = out / "train_log.jsonl"
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if log.is_file() and any(e["event"] == "step" and e["epoch"] == 1 for e in map(json.loads, log.read_text().splitlines())):
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        os.killpg(proc.pid, signal.SIGKILL)  # the process group this test started
    finally:
        proc.wait(30)
    pointer = json.loads((out / "checkpoints" / "last.json").read_text())
    assert pointer["epoch"] == 1 and not (out / "manifest.json").exists()  # killed inside epoch 2
    assert _cli(["finetune", str(space / "data"), "-o", str(out), *COMMON, "--resume"]) == 0
    assert _max_diff(_weights(out), _weights(single)) < 1e-6
    assert [e["val"] for e in _events(out, "epoch")][-1] == [e["val"] for e in _events(single, "epoch")][-1]
    assert _events(out, "resume")[0]["epoch"] == 1


# ----------------------------------------------------------------------------------- bad input


def _fails(args: list[str], capsys) -> str:
    code = _cli(args)
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    return " ".join(err.split())


def test_class_with_too_few_images_is_one_clear_error(tmp_path, capsys):
    write_dataset(tmp_path / "data", patients_per_class=2, images_per_patient=2, classes=["superficial", "not_burn"])
    for extra in list((tmp_path / "data" / "not_burn").iterdir())[1:]:
        extra.unlink()
    err = _fails(["finetune", str(tmp_path / "data"), "-o", str(tmp_path / "out"), *COMMON], capsys)
    assert "too few images" in err and "not_burn (1)" in err
    assert not (tmp_path / "out" / "train_log.jsonl").exists()


def test_labels_outside_the_five_classes_are_one_clear_error(tmp_path, capsys):
    write_dataset(tmp_path / "data", patients_per_class=2, images_per_patient=2, classes=["superficial", "not_burn"])
    rows = ["path,label"] + [f"{p.relative_to(tmp_path)},{p.parent.name}" for p in sorted((tmp_path / "data").rglob("*.png"))]
    rows.append(f"{rows[1].split(',')[0]},charred")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    err = _fails(["finetune", str(tmp_path / "labels.csv"), "-o", str(tmp_path / "out"), *COMMON], capsys)
    assert "labels not among the five classes" in err and "'charred'" in err


def test_patient_on_both_sides_of_a_given_split_is_one_clear_error(tmp_path, capsys):
    classes = ["superficial", "full_thickness"]
    write_dataset(tmp_path / "data" / "train", patients_per_class=2, images_per_patient=2, classes=classes)
    write_dataset(tmp_path / "data" / "val", patients_per_class=1, images_per_patient=2, classes=classes, first_patient=50)
    shutil.copy(tmp_path / "data" / "train" / "superficial" / "p000_0.png", tmp_path / "data" / "val" / "superficial" / "p000_7.png")
    err = _fails(["finetune", str(tmp_path / "data"), "-o", str(tmp_path / "out"), *COMMON, "--min-per-class", "2"], capsys)
    assert "1 patient(s)/stud(ies) appear in both train and val" in err and "p000_7.png" in err


def test_corrupt_checkpoint_is_one_clear_error(space, single, capsys):
    run = space / "corrupt"
    shutil.copytree(single / "checkpoints", run / "checkpoints")
    target = run / "checkpoints" / json.loads((run / "checkpoints" / "last.json").read_text())["file"]
    blob = bytearray(target.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    target.write_bytes(bytes(blob))
    err = _fails(["finetune", str(space / "data"), "-o", str(run), *COMMON, "--resume"], capsys)
    assert "checkpoint epoch-002.pt is corrupt" in err and not (run / "train_log.jsonl").exists()
    (run / "checkpoints" / "last.json").write_text("{not json")
    assert "is corrupt" in _fails(["finetune", str(space / "data"), "-o", str(run), *COMMON, "--resume"], capsys)


# ------------------------------------------------------------------------------- data, unit level


def test_dicom_files_are_grouped_by_patient_and_photos_by_file_name(tmp_path):
    from burnscope.lifecycle.training.data import group_of

    study = sorted((REPO / "sample_data" / "study-001").glob("*.dcm"))
    assert len({group_of(p) for p in study}) == 1  # one patient's study
    assert group_of(Path("p12_1.jpg")) == group_of(Path("p12-2.png")) != group_of(Path("p13_1.jpg"))
    nested = tmp_path / "superficial" / "patient-7" / "a.png"
    assert group_of(nested, tmp_path / "superficial") == group_of(nested.with_name("b.png"), tmp_path / "superficial")


def test_split_by_group_never_puts_a_patient_on_both_sides():
    from burnscope.lifecycle.training.data import split_by_group

    rng = np.random.default_rng(0)
    for seed in range(20):
        groups = [f"g{int(g)}" for g in rng.integers(0, 15, 80)]
        labels = rng.integers(0, 5, 80)
        train, val = split_by_group(labels, groups, 0.2, seed)
        assert len(train) + len(val) == 80 and len(val) > 0
        assert not {groups[i] for i in train} & {groups[i] for i in val}


def test_training_crops_equal_the_pipeline_preprocessing():
    from burnscope.lifecycle.training.augment import normalise
    from burnscope.lifecycle.training.data import crop_uint8
    from burnscope.operators.preprocess.core import BIOMEDCLIP_MEAN, BIOMEDCLIP_STD, Preprocessor

    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((300, 451, 3), (500, 240, 3), (224, 224, 3))]
    expected = Preprocessor(device="cpu")(images)
    crops = np.stack([crop_uint8(img, 224) for img in images]).transpose(0, 3, 1, 2)
    assert np.array_equal(normalise(crops, BIOMEDCLIP_MEAN, BIOMEDCLIP_STD), expected)


def test_augmentation_is_seeded_per_image_and_bounded():
    from burnscope.lifecycle.training.augment import Augment

    rng = np.random.default_rng(2)
    crops = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    mean = (0.5, 0.5, 0.5)
    whole = Augment()(crops, [10, 11, 12, 13], epoch=3, seed=0, mean=mean)
    alone = Augment()(crops[2:3], [12], epoch=3, seed=0, mean=mean)
    assert np.array_equal(whole[2], alone[0])  # independent of the batch an image is drawn in
    assert not np.array_equal(whole, Augment()(crops, [10, 11, 12, 13], epoch=4, seed=0, mean=mean))
    with pytest.raises(ValueError, match="colour is diagnostic"):
        Augment(hue=0.3)
