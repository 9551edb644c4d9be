"""The CPU-share benchmark: every stage timed, the tower stand-in is an instrument nobody can
select for reports."""

from __future__ import annotations

import pytest

from burnscope.applications.burn_triage.settings import SettingsError, load_settings
from burnscope.benchmarks import cpu_share
from burnscope.engines.base import INSTRUMENT_BACKEND, EngineError, check_engine_choice, create_engine, is_instrument
from fixtures import SAMPLE_DATA


def test_measures_every_stage_per_image_at_each_batch_size():
    result = cpu_share.run_local(SAMPLE_DATA, copies=1, batch_sizes=(1, 4), repeat=1,
                                 formats=("json", "txt"), model_config="biomedclip-tiny")
    assert result["model"]["backend"] == INSTRUMENT_BACKEND and result["model"]["demo"] is True
    assert "instrument" in result["model"]["name"] and "instrument" in result["model"]["weights"]
    for size in ("1", "4"):
        entry = result["batches"][size]
        assert entry["images"] == 10
        stages = entry["stages"]
        for stage in ("decode", "preprocess", "tower", "head", "decision support",
                      "report: dict only", "report: json+txt", "report: json alone", "report: txt alone"):
            assert stages[stage]["cpu_ms"] > 0 and stages[stage]["wall_ms"] > 0, stage
        after = entry["sums"][next(iter(cpu_share.SUMS))]["cpu_ms"]
        parts = sum(stages[s]["cpu_ms"] for s in ("head", "decision support", "report: json+txt",
                                                   "study roll-up (json+txt)"))
        assert after == pytest.approx(parts, abs=1e-3)
        assert "report: all formats together" not in stages  # JSON + text only: nothing more to measure
        assert stages["tower"]["cpu_ms"] < stages["preprocess"]["cpu_ms"]  # it costs ~nothing


def test_stand_in_gives_varied_findings_without_looking_at_pixels():
    import numpy as np

    from burnscope.engines.model import load_biomedclip
    from burnscope.operators.burn_severity.core import load_head

    bundle = load_biomedclip(config="biomedclip-tiny")
    head = load_head(bundle)
    tower = cpu_share.StandInTower(bundle, class_directions=head.weights)
    assert is_instrument(tower.model_info)
    out = tower.infer(np.zeros((12, 3, 224, 224), np.float32))
    assert out.shape == (12, bundle.embed_dim)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    top = head.predict_proba(out).max(axis=1)
    head.abstain_threshold = float(np.quantile(top, cpu_share.ABSTAINED_SHARE))  # as the benchmark does
    labels = [p.label for p in head.predict(out)]
    assert 0 < labels.count("needs_review") < len(labels) and len(set(labels)) > 2


def test_the_instrument_is_refused_everywhere_a_report_could_come_from(tmp_path):
    with pytest.raises(SettingsError, match="benchmark instrument"):
        load_settings(overrides={"inference": {"backend": INSTRUMENT_BACKEND}})
    with pytest.raises(EngineError, match="benchmark instrument"):
        check_engine_choice(INSTRUMENT_BACKEND, "fp32")
    with pytest.raises(EngineError, match="benchmark instrument"):
        create_engine(None, backend=INSTRUMENT_BACKEND)

    from burnscope.applications.burn_triage.app import TriageComponents
    from burnscope.applications.burn_triage.runner import run_triage
    from burnscope.engines.model import load_biomedclip

    bundle = load_biomedclip(config="biomedclip-tiny")
    components = TriageComponents(bundle=bundle, engine=cpu_share.StandInTower(bundle), preprocessor=None, head=None)
    with pytest.raises(ValueError, match="benchmark instrument"):
        run_triage(load_settings(), SAMPLE_DATA, tmp_path / "out", components)
    assert not (tmp_path / "out").exists()


def test_cli_refuses_the_instrument_backend(tmp_path):
    from burnscope.applications.cli import main

    assert main(["run", "burn-triage", "-i", str(SAMPLE_DATA), "-o", str(tmp_path / "o"), "--backend", "none"]) == 2


def test_gpu_mode_says_what_it_needs_on_a_cpu_machine():
    from burnscope.operators.dicom_loader import gpu_jpeg

    if gpu_jpeg.available():
        pytest.skip("a GPU and nvImageCodec are usable here")
    with pytest.raises(RuntimeError, match="needs a usable CUDA GPU"):
        cpu_share.run_benchmark(SAMPLE_DATA, copies=1, batch_sizes=(1,), repeat=1, formats=("json",), gpu=True)


def test_gpu_targets_summary_reads_what_the_suite_writes(tmp_path):
    import json

    from burnscope.benchmarks import gpu_targets

    (tmp_path / "burn-triage-gpudecode-batch32.json").write_text(json.dumps({"images_per_s": 3500.0}))
    (tmp_path / "burn-triage-gpu-paced.json").write_text(json.dumps({"latency_ms": {"p99": 7.5}}))
    stages = cpu_share.run_local(SAMPLE_DATA, copies=1, batch_sizes=(32,), repeat=1, formats=("json",),
                                 model_config="biomedclip-tiny")
    (tmp_path / "stages-gpu-sample.json").write_text(json.dumps({"installations": {"this": stages}}))
    table = "\n".join(gpu_targets.targets_table(tmp_path) + gpu_targets.stages_table(tmp_path))
    assert "| pipeline incl. decode, sample-size, img/s | ≥ 3,000 | 3,500.0 | met |" in table
    assert "| 7.5 | **not met** | burn-triage-gpu-paced.json |" in table
    assert "12 MP photos, img/s | ≥ 500 | not measured" in table
    assert "| decode |" in table and "| report: json alone |" in table


def test_all_formats_are_also_measured_together_as_one_run_writes_them():
    entry = cpu_share.run_local(SAMPLE_DATA, copies=1, batch_sizes=(4,), repeat=1, formats=("json", "fhir"),
                                model_config="biomedclip-tiny")["batches"]["4"]
    stages = entry["stages"]
    together = stages["report: all formats together"]["cpu_ms"]
    assert together > stages["report: json alone"]["cpu_ms"] and together > 0
    parts = sum(stages[s]["cpu_ms"] for s in ("head", "decision support", "report: all formats together",
                                              "study roll-up (json+txt)"))
    assert entry["sums"]["sum: all formats after the tower (head, decisions, reports, roll-ups)"]["cpu_ms"] == \
        pytest.approx(parts, abs=1e-3)
