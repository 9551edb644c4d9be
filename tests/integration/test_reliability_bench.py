"""Smokes of the reliability benchmarks: a few stress runs per scheduler under CPU load, a short
soak through a real ``--watch`` service; and the stress check catching what it must catch."""

from __future__ import annotations

import pytest
from fixtures.dicom_helpers import SAMPLE

from burnscope.benchmarks.stress import check_run, machine


@pytest.mark.slow
@pytest.mark.network
def test_stress_smoke_both_schedulers_under_load_nothing_lost():
    from burnscope.applications.burn_triage.app import build_components
    from burnscope.applications.burn_triage.settings import load_settings
    from burnscope.benchmarks.stress import run_stress

    settings = load_settings(overrides={"inference": {"model_config": "biomedclip-tiny"}, "source": {"batch_size": 3},
                                        "report": {"formats": ["json", "txt"]}})
    seen = []
    result = run_stress(settings, SAMPLE, build_components(settings), runs=2, load=1,
                        on_run=lambda kind, i, problems: seen.append((kind, i, problems)))
    assert [(k, i) for k, i, _ in seen] == [("event_based", 0), ("event_based", 1), ("greedy", 0), ("greedy", 1)]
    for kind, r in result["schedulers"].items():
        assert r["failed_runs"] == 0 and r["images_lost"] == 0, (kind, r["failures"])
        assert r["images_per_run"] == 10
    assert "fhir" in result["report_formats"] and result["machine"]["cpus"]


@pytest.mark.slow
def test_soak_smoke_through_a_real_watch_service(tmp_path):
    from burnscope.benchmarks.soak import run_soak

    config = tmp_path / "soak.yaml"
    config.write_text("inference:\n  model_config: biomedclip-tiny\nreport:\n  formats: [json, txt]\n"
                      "source:\n  batch_size: 3\n  watch:\n    poll_interval: 0.2\n    settle_seconds: 0.3\n")
    result = run_soak(images=30, config=config, sample_s=0.5, backlog=10, workdir=tmp_path / "soak")
    assert result["exit_code"] == 0, result["log_tail"]
    assert result["lost"] == 0 and result["reported"] == result["images_decoded"] >= 30, {k: v for k, v in result.items() if k != "samples"}
    assert result["samples"] and all(s["rss_mb"] > 0 and s["fds"] > 0 for s in result["samples"])
    assert set(result["growth"]) == {"rss_mb", "fds"}


def test_the_stress_check_catches_every_kind_of_shortfall(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for i in range(10):
        (out / f"IMG-{i}.json").write_text("{}")
    good = {"images": 10, "accounting": {"lost": 0, "balanced": True, "reported": 10},
            "delivery": {"enqueued": 10}, "run": {"outcome": "drained"}}
    assert check_run(good, out, 10, delivered=10) == []
    assert check_run(good, out, 10, delivered=9) == ["9 delivered to the endpoint"]
    short = {**good, "delivery": {"enqueued": 9}}
    assert check_run(short, out, 10, delivered=10) == ["9 enqueued for delivery"]
    lost = {**good, "accounting": {"lost": 1, "balanced": True, "reported": 9}, "run": {"outcome": "ended_by_scheduler"}}
    assert check_run(lost, out, 10, delivered=None) == ["lost 1", "reported 9 of 10", "ended ended_by_scheduler"]
    (out / "IMG-0.json").unlink()
    assert check_run(good, out, 10, delivered=None) == ["9 report files for 10 images"]
    assert machine()["cpus"]


def test_soak_without_input_outside_a_checkout_names_the_option(tmp_path):
    from burnscope.benchmarks.soak import run_soak

    with pytest.raises(FileNotFoundError, match="give -i/--input a folder of DICOM images"):
        run_soak(images=1, source=tmp_path / "no-such-folder", workdir=tmp_path / "work")
