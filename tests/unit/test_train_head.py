"""Linear probe training, evaluation metrics and plots, and the train-head / evaluate CLI end to end."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from burnscope.operators.burn_severity.core import CLASSES, BurnHead, HeadError, train_linear_probe
from burnscope.operators.burn_severity.evaluation import evaluate_head, save_plots
from fixtures import REPO



def synthetic_embeddings(per_class=40, dim=64, signal=1.0, seed=0, noise_seed=None):
    """Unit vectors around one random centre per class: a learnable signal in embedding space.

    ``seed`` fixes the class centres; ``noise_seed`` (default: ``seed``) the samples around them,
    so a held-out set shares the classes but none of the training vectors.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(CLASSES), dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    if noise_seed is not None:
        rng = np.random.default_rng([seed, noise_seed])
    x = np.concatenate(
        [signal * c + rng.normal(scale=1 / np.sqrt(dim) * 1.5, size=(per_class, dim)) for c in centres]
    )
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = [c for c in CLASSES for _ in range(per_class)]
    return x.astype(np.float32), labels


def test_probe_beats_chance_by_a_wide_margin():
    x, labels = synthetic_embeddings()
    head, report = train_linear_probe(x, labels, folds=5)
    assert report["cv_folds"] == 5 and report["classes"] == list(CLASSES)
    assert report["cv_accuracy"] > 0.9 and report["cv_macro_f1"] > 0.9  # chance is 0.2
    test_x, test_labels = synthetic_embeddings(per_class=20, seed=0, noise_seed=1)  # same classes, new samples
    assert evaluate_head(head, test_x, test_labels)["accuracy"] > 0.9


def test_probe_on_shuffled_labels_stays_at_chance():
    x, labels = synthetic_embeddings()
    shuffled = list(np.random.default_rng(1).permutation(labels))
    _, report = train_linear_probe(x, shuffled, folds=5)
    assert report["cv_accuracy"] < 0.35


def test_probe_rejects_bad_labels():
    x, labels = synthetic_embeddings(per_class=5)
    with pytest.raises(HeadError, match="unknown class"):
        train_linear_probe(x, ["charred"] + labels[1:])
    with pytest.raises(HeadError, match="two classes"):
        train_linear_probe(x[:5], labels[:5])


def test_binary_probe_keeps_both_classes():
    x, labels = synthetic_embeddings(per_class=20)
    keep = [i for i, lab in enumerate(labels) if lab in ("full_thickness", "not_burn")]
    head, report = train_linear_probe(x[keep], [labels[i] for i in keep], folds=4)
    assert head.classes == ["full_thickness", "not_burn"] and head.weights.shape[0] == 2
    assert report["cv_accuracy"] > 0.9


def test_metrics_agree_with_scikit_learn_and_plots_are_written(tmp_path):
    x, labels = synthetic_embeddings(per_class=30, signal=0.35)
    head, _ = train_linear_probe(x, labels, folds=3)
    metrics = evaluate_head(head, x, labels)
    predicted = [head.classes[i] for i in head.predict_proba(x).argmax(1)]
    assert metrics["accuracy"] == pytest.approx(accuracy_score(labels, predicted))
    assert metrics["macro_f1"] == pytest.approx(f1_score(labels, predicted, average="macro"))
    cm = np.array(metrics["confusion_matrix"])
    assert cm.sum() == len(labels) and cm.shape == (5, 5)
    for i, name in enumerate(metrics["classes"]):
        row = metrics["per_class"][name]
        assert row["sensitivity"] == pytest.approx(cm[i, i] / cm[i].sum())
        negatives = cm.sum() - cm[i].sum()
        assert row["specificity"] == pytest.approx((negatives - (cm[:, i].sum() - cm[i, i])) / negatives)
    assert 0.0 <= metrics["ece"] <= 1.0 and sum(metrics["reliability"]["count"]) == len(labels)
    for png in save_plots(metrics, tmp_path / "plots"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- end to end through the tiny model

COLOURS = {"superficial": (225, 90, 80), "full_thickness": (45, 35, 25), "not_burn": (205, 175, 150)}


@pytest.fixture()
def labelled_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    for name, colour in COLOURS.items():
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(6):
            pixels = np.clip(np.array(colour) + rng.normal(0, 18, (60 + i, 72, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"img{i}.{'png' if i % 2 else 'jpg'}")
    (root / "not_burn" / "broken.png").write_text("not an image")
    # A DICOM photograph (sample data) counts as one more image of its folder.
    shutil.copy(REPO / "sample_data" / "study-001" / "IMG-0001.dcm", root / "not_burn" / "photo.dcm")
    return root


def test_train_head_and_evaluate_cli_end_to_end(labelled_folder, tmp_path, monkeypatch, capsys):
    import torch

    torch.set_num_threads(1)
    monkeypatch.setenv("BURNSCOPE_CACHE", str(tmp_path / "cache"))
    from burnscope.applications.cli import main
    from burnscope.engines.model import load_biomedclip
    from burnscope.operators.burn_severity.dataset import embed_labelled_folder

    head_file = tmp_path / "head.json"
    assert (
        main(
            [
                "train-head",
                str(labelled_folder),
                "--out",
                str(head_file),
                "--model-config",
                "biomedclip-tiny",
                "--folds",
                "3",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert "broken.png" in captured.err and "19 images (19 encoded" in captured.err
    assert "DEMO MODEL (random weights)" in captured.out
    head = BurnHead.load(head_file)
    assert head.kind == "linear-probe" and head.classes == ["superficial", "full_thickness", "not_burn"]
    assert head_file.stat().st_size < 50_000  # a probe, not encoder weights
    assert head.metadata["training"]["cv_accuracy"] > 0.8  # chance is 1/3

    # Re-running reads every embedding from the cache.
    bundle = load_biomedclip(config="biomedclip-tiny")
    again = embed_labelled_folder(bundle, labelled_folder)
    assert again.encoded == 0 and len(again.labels) == 19

    metrics_file, plots = tmp_path / "metrics.json", tmp_path / "plots"
    args = [
        "evaluate",
        str(labelled_folder),
        "--head",
        str(head_file),
        "--model-config",
        "biomedclip-tiny",
        "--json",
        str(metrics_file),
        "--plots",
        str(plots),
    ]
    assert main(args) == 0
    metrics = json.loads(metrics_file.read_text())
    assert metrics["n_images"] == 19 and metrics["accuracy"] > 0.8
    assert metrics["model"]["demo"] is True and "DEMO MODEL" in metrics["banner"]
    assert {p.name for p in plots.iterdir()} == {"confusion_matrix.png", "reliability_diagram.png"}

    # Zero-shot evaluation and calibration on the same folder.
    assert (
        main(
            [
                "evaluate",
                str(labelled_folder),
                "--model-config",
                "biomedclip-tiny",
                "--json",
                str(metrics_file),
            ]
        )
        == 0
    )
    assert json.loads(metrics_file.read_text())["head"].startswith("zero-shot")
    calibrated = tmp_path / "zero-shot.json"
    assert (
        main(
            ["calibrate", str(labelled_folder), "--out", str(calibrated), "--model-config", "biomedclip-tiny"]
        )
        == 0
    )
    assert BurnHead.load(calibrated).temperature != 1.0


def test_cli_bad_folder_is_one_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BURNSCOPE_CACHE", str(tmp_path / "cache"))
    from burnscope.applications.cli import main

    (tmp_path / "data" / "charred").mkdir(parents=True)
    code = main(
        [
            "train-head",
            str(tmp_path / "data"),
            "--out",
            str(tmp_path / "h.json"),
            "--model-config",
            "biomedclip-tiny",
        ]
    )
    assert code != 0
    err = capsys.readouterr().err
    assert "unknown class folder" in err and "Traceback" not in err
