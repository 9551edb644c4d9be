"""The burn-triage application end to end: the full Holoscan graph on CPU, on sample_data/."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fixtures.dicom_helpers import (
    DCMTK_STORESCU, GOOD_FILES, SAMPLE, free_port, in_background, pynetdicom_send, storescu_send,
)
from typer.testing import CliRunner

from burnscope.applications.burn_triage.settings import SettingsError, load_settings
from burnscope.applications.cli import app as cli_app
from burnscope.common.messages import DEMO_BANNER

MANIFEST = json.loads((SAMPLE / "manifest.json").read_text())


def _expected_counts() -> tuple[int, dict[str, str]]:
    """Images the loader should produce (frames of accepted files) and the bad files' reasons."""
    return MANIFEST["expected_images"], MANIFEST["expected_errors"]


@pytest.fixture(scope="module")
def tiny_settings():
    # Same architecture family, small sizes: the suite stays fast. Batch 3 exercises a partial batch.
    return load_settings(overrides={"inference": {"model_config": "biomedclip-tiny"}, "source": {"batch_size": 3}})


@pytest.fixture(scope="module")
def components(tiny_settings):
    from burnscope.applications.burn_triage.app import build_components

    return build_components(tiny_settings)


@pytest.fixture(scope="module")
def triage_run(tiny_settings, components, tmp_path_factory):
    from burnscope.applications.burn_triage.runner import run_triage

    out = tmp_path_factory.mktemp("triage-out")
    summary = run_triage(tiny_settings, SAMPLE, out, components)
    return summary, out


def test_graph_writes_a_report_per_image_and_an_error_record_per_bad_file(triage_run):
    summary, out = triage_run
    images, bad = _expected_counts()
    assert summary["images"] == images
    assert summary["reports"] == images
    # reports mirror the input folders: <study>/<file>.<suffix>, one set per image
    reports = [p for p in out.rglob("IMG-*.json") if not p.name.endswith(".fhir.json")]
    assert len(reports) == images
    for suffix in (".txt", ".sr.dcm", ".pdf", ".pdf.dcm", ".fhir.json"):
        assert len(list(out.rglob(f"IMG-*{suffix}"))) == images, suffix
    # a study-level roll-up for each study with several images
    assert {p.parent.name for p in out.rglob("study.json")} == {"study-001", "study-002", "study-003"}
    # every report names its source image, carries a finding, and is flagged demo
    for path in reports:
        report = json.loads(path.read_text())
        assert report["demo_model"] is True
        assert DEMO_BANNER in json.dumps(report, ensure_ascii=False)
    sources = {json.loads(p.read_text())["source"]["sop_instance_uid"] for p in reports}
    accepted_uids = {f["sop_instance_uid"] for f in MANIFEST["files"] if f["expected"] == "accepted"}
    assert accepted_uids <= sources
    # the non-DICOM and the corrupt file became error records with their reasons
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert summary["errors"] == len(bad) == len(errors)
    assert {Path(e["source"]).name: e["reason"] for e in errors} == {Path(p).name: r for p, r in bad.items()}
    assert sum(summary["findings"].values()) == images


def test_text_reports_open_with_the_demo_banner(triage_run):
    _, out = triage_run
    texts = list(out.rglob("IMG-*.txt"))
    assert len(texts) == _expected_counts()[0]
    for path in texts:
        assert DEMO_BANNER in path.read_text().splitlines()[:3]  # the banner opens the report


def test_summary_reports_model_backend_and_demo(triage_run):
    summary, _ = triage_run
    assert summary["model"]["backend"] == "onnxruntime"
    assert summary["model"]["demo"] is True
    assert summary["warning"] == DEMO_BANNER


def test_no_patient_identifiers_in_logs(tiny_settings, components, tmp_path, caplog):
    from burnscope.applications.burn_triage.runner import run_triage

    caplog.set_level("DEBUG")
    run_triage(tiny_settings, SAMPLE, tmp_path, components)
    text = caplog.text
    for patient in MANIFEST["patients"]:
        for value in (patient["name"], patient["patient_id"], patient["birth_date"]):
            assert value not in text
            assert value.split("^")[0] not in text


def test_headless_benchmark_reports_percentiles(tiny_settings, components):
    from burnscope.benchmarks.burn_triage import bench_triage

    settings = dict(tiny_settings, source=dict(tiny_settings["source"], batch_size=1))
    result = bench_triage(settings, SAMPLE, components, repeat=1)
    images, _ = _expected_counts()
    assert result["images_per_run"] == images
    assert result["messages"] == images  # one message per image at batch 1
    lat = result["latency_ms"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert result["images_per_s"] > 0
    assert result["peak_rss_mb"] > 0


def test_torch_backend_gives_the_same_findings_as_onnxruntime(tiny_settings, components, triage_run, tmp_path):
    from burnscope.applications.burn_triage.app import build_components
    from burnscope.applications.burn_triage.runner import run_triage

    settings = load_settings(overrides={"inference": {"model_config": "biomedclip-tiny", "backend": "torch"}})
    summary = run_triage(settings, SAMPLE, tmp_path, build_components(settings))
    assert summary["model"]["backend"] == "torch"
    assert summary["findings"] == triage_run[0]["findings"]
    # demo findings all abstain, so compare what the backends actually computed, image by image
    _assert_same_probabilities(triage_run[1], tmp_path)


def _probabilities(out) -> dict:
    reports = (json.loads(p.read_text()) for p in out.rglob("IMG-*.json") if not p.name.endswith(".fhir.json"))
    return {(r["source"]["sop_instance_uid"], r["source"]["frame"]): r["finding"]["probabilities"] for r in reports}


def _assert_same_probabilities(out_a, out_b, atol=1e-4):
    a, b = _probabilities(out_a), _probabilities(out_b)
    assert a.keys() == b.keys() and len(a) == _expected_counts()[0]
    for key in a:
        assert a[key].keys() == b[key].keys()
        for label, value in a[key].items():
            assert abs(value - b[key][label]) <= atol, (key, label, value, b[key][label])


# --- bad input: one clear line, non-zero exit, before any model is loaded -------------------

runner = CliRunner()


def test_missing_input_is_one_clear_error(tmp_path):
    result = runner.invoke(cli_app, ["run", "burn-triage", "-i", str(tmp_path / "nope"), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "input not found" in result.output


def test_empty_folder_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    result = runner.invoke(cli_app, ["run", "burn-triage", "-i", str(tmp_path / "empty"), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "empty" in result.output


def test_unknown_backend_is_an_error(tmp_path):
    result = runner.invoke(cli_app, ["run", "burn-triage", "-i", str(SAMPLE), "-o", str(tmp_path), "--backend", "magic"])
    assert result.exit_code == 2
    assert "unknown backend 'magic'" in result.output


def test_unknown_application_is_an_error(tmp_path):
    result = runner.invoke(cli_app, ["run", "burn-scan", "-i", str(SAMPLE), "-o", str(tmp_path)])
    assert result.exit_code == 2
    assert "unknown application" in result.output


def test_settings_reject_bad_values():
    with pytest.raises(SettingsError, match="batch_size"):
        load_settings(overrides={"source": {"batch_size": 0}})
    with pytest.raises(SettingsError, match="abstain_threshold"):
        load_settings(overrides={"burn_severity": {"abstain_threshold": 1.5}})


def test_cli_run_exits_non_zero_when_no_image_could_be_processed(tmp_path, monkeypatch):
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(SAMPLE / "notes.txt", bad / "notes.txt")
    config = tmp_path / "tiny.yaml"
    config.write_text("inference:\n  model_config: biomedclip-tiny\n")
    result = runner.invoke(cli_app, ["run", "burn-triage", "-i", str(bad), "-o", str(tmp_path / "o"), "-c", str(config), "-q"])
    assert result.exit_code == 1, result.output
    assert "no image could be processed" in result.output
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["errors"] == 1


def test_direct_pipeline_processes_the_same_images(tiny_settings, components):
    from burnscope.benchmarks.burn_triage import run_direct

    result = run_direct(tiny_settings, SAMPLE, components)
    images, _ = _expected_counts()
    assert result["images"] == result["reports"] == images
    batches = -(-images // tiny_settings["source"]["batch_size"])  # ceil: the last batch is partial
    assert len(result["latencies_ms"]) == batches
    assert all(lat > 0 for lat in result["latencies_ms"])


def test_cli_bench_writes_json(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text("inference:\n  model_config: biomedclip-tiny\n")
    out = tmp_path / "b.json"
    result = runner.invoke(cli_app, ["bench", "burn-triage", "-i", str(SAMPLE), "--repeat", "1", "-c", str(config), "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert {"p50", "p95", "p99"} <= set(data["latency_ms"])
    assert data["images_per_s"] > 0 and data["direct"]["images_per_s"] > 0
    assert data["warning"] == DEMO_BANNER and DEMO_BANNER in result.output


def test_cli_case_option_feeds_decision_support(tmp_path):
    images = tmp_path / "in"
    images.mkdir()
    shutil.copy(SAMPLE / "study-001" / "IMG-0001.dcm", images / "IMG-0001.dcm")  # no sidecar beside it
    case = json.loads((SAMPLE / "study-001" / "case.json").read_text())
    (tmp_path / "case.json").write_text(json.dumps(case))
    config = tmp_path / "tiny.yaml"
    config.write_text("inference:\n  model_config: biomedclip-tiny\n")
    out = tmp_path / "out"
    args = ["run", "burn-triage", "-i", str(images), "-o", str(out), "-c", str(config), "-q"]
    result = runner.invoke(cli_app, args + ["--case", str(tmp_path / "case.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "IMG-0001.json").read_text())
    support = report["decision_support"]
    # 0.5 × 9 % (arm) + 0.25 × 18 % (anterior trunk) = 9 % TBSA: below the adult resuscitation
    # threshold (20 %), so no fluid plan
    assert support["tbsa_percent"] == pytest.approx(9.0)
    assert support["parkland"] is None
    assert "weight_kg" not in report["missing_inputs"]
    # without --case the same image has no case data, and the report says what is missing
    result = runner.invoke(cli_app, args[:5] + [str(tmp_path / "out2")] + args[6:])
    assert result.exit_code == 0, result.output
    bare = json.loads((tmp_path / "out2" / "IMG-0001.json").read_text())
    assert bare["decision_support"]["tbsa_percent"] is None
    assert bare["missing_inputs"]


def test_auto_engine_choice_follows_the_machine(monkeypatch):
    from burnscope.applications.burn_triage.settings import resolve_engine_choice
    from burnscope.common import gpu

    auto = {"backend": "auto", "precision": "auto", "device": "auto"}
    monkeypatch.setattr(gpu, "torch_cuda_usable", lambda: False)
    assert resolve_engine_choice(auto) == ("onnxruntime", "fp32")
    monkeypatch.setattr(gpu, "torch_cuda_usable", lambda: True)
    assert resolve_engine_choice(auto) == ("torch", "fp16")
    assert resolve_engine_choice(dict(auto, device="cpu")) == ("onnxruntime", "fp32")
    assert resolve_engine_choice(dict(auto, backend="onnxruntime")) == ("onnxruntime", "fp32")
    assert resolve_engine_choice({"backend": "torch", "precision": "bf16", "device": "auto"}) == ("torch", "bf16")


# --- delivery through the outbox, from the application ------------------------------------


@pytest.fixture
def fhir_endpoint():
    import threading
    from http.server import ThreadingHTTPServer

    from test_fhir_post import _FhirEndpoint  # the validating endpoint of the FHIR sink tests

    _FhirEndpoint.received, _FhirEndpoint.outage = [], 0
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _FhirEndpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server, _FhirEndpoint
    server.shutdown()
    server.server_close()


def _with_fhir(settings, url, drain_s):
    delivery = {"destinations": [{"name": "emr", "kind": "fhir", "url": url}], "echo": False, "drain_timeout_s": drain_s}
    # The default scheduler (event-based, several workers): the run monitor ends the graph once
    # every report has reached every sink, the delivery sink included (docs/reliability.md).
    return dict(settings, delivery=delivery, report=dict(settings["report"], formats=["json", "txt", "fhir"]))


def _outbox_rows(path):
    from burnscope.operators.sinks.outbox import Outbox

    outbox = Outbox(path)
    try:
        return [{k: row[k] for k in ("key", "status", "attempts", "last_status")} for row in outbox.rows()]
    finally:
        outbox.close()


def test_app_delivers_every_report_to_a_fhir_endpoint_exactly_once(tiny_settings, components, tmp_path, fhir_endpoint):
    from burnscope.applications.burn_triage.runner import run_triage

    server, endpoint = fhir_endpoint
    settings = _with_fhir(tiny_settings, f"http://127.0.0.1:{server.server_port}/fhir", drain_s=20)
    summary = run_triage(settings, SAMPLE, tmp_path, components)
    images, _ = _expected_counts()
    rows = _outbox_rows(tmp_path / "outbox.sqlite")
    assert summary["delivery"]["delivered"] == images and summary["delivery"]["failed"] == 0, (summary, rows)
    assert len(endpoint.received) == images
    assert len({bundle["id"] for bundle in endpoint.received}) == images
    # the same input again: identical reports, nothing sent twice
    run_triage(settings, SAMPLE, tmp_path, components)
    assert len(endpoint.received) == images


def test_app_keeps_reports_in_the_outbox_while_the_server_is_down(tiny_settings, components, tmp_path, fhir_endpoint):
    from burnscope.applications.burn_triage.runner import run_triage

    down = f"http://127.0.0.1:{free_port()}/fhir"  # nothing listens there
    summary = run_triage(_with_fhir(tiny_settings, down, drain_s=0.5), SAMPLE, tmp_path, components)
    images, _ = _expected_counts()
    assert summary["reports"] == images  # the folder still has every report
    assert summary["delivery"]["delivered"] == 0 and summary["delivery"]["pending"] == images
    # the server is back (the outbox keeps each destination's address, so point a new run at it)
    server, endpoint = fhir_endpoint
    up = _with_fhir(tiny_settings, f"http://127.0.0.1:{server.server_port}/fhir", drain_s=20)
    up["delivery"]["destinations"][0]["name"] = "emr"
    summary = run_triage(up, SAMPLE, tmp_path, components)
    assert summary["delivery"]["pending"] == 0
    assert len(endpoint.received) == images


def test_delivery_max_attempts_marks_a_destination_that_never_answers_failed(tiny_settings, components, tmp_path):
    from burnscope.applications.burn_triage.runner import run_triage

    settings = _with_fhir(tiny_settings, f"http://127.0.0.1:{free_port()}/fhir", drain_s=0.5)  # nothing listens
    settings["delivery"]["max_attempts"] = 1
    summary = run_triage(settings, SAMPLE, tmp_path, components)
    images, _ = _expected_counts()
    rows = _outbox_rows(tmp_path / "outbox.sqlite")
    assert summary["delivery"]["failed"] == images and summary["delivery"]["pending"] == 0, (summary, rows)
    assert {row["status"] for row in rows} == {"failed"} and {row["attempts"] for row in rows} == {1}


# --- other ways in: a C-STORE SCP and a watched folder feed the same graph -----------------


def _scp_settings(tiny_settings, port, files):
    scp = dict(tiny_settings["source"]["scp"], port=port, sop_classes="all")
    source = dict(tiny_settings["source"], kind="scp", scp=scp, max_files=files, stop_after_idle=30)
    return dict(tiny_settings, source=source, report=dict(tiny_settings["report"], formats=["json", "txt"]))


def test_cstore_round_trip_through_the_app_produces_reports(tiny_settings, components, tmp_path):
    """pynetdicom SCU → the app's C-STORE SCP → a report per image."""
    import pydicom

    from burnscope.applications.burn_triage.runner import run_triage

    port = free_port()
    statuses = []

    def send():
        statuses.extend(pynetdicom_send(port, GOOD_FILES, ae_title="MODALITY"))

    thread = in_background(send)
    summary = run_triage(_scp_settings(tiny_settings, port, len(GOOD_FILES)), tmp_path / "in", tmp_path / "out", components)
    thread.join(timeout=30)
    images, _ = _expected_counts()
    assert statuses == [0] * len(GOOD_FILES)
    assert summary["images"] == summary["reports"] == images
    reports = [json.loads(p.read_text()) for p in (tmp_path / "out").rglob("*.json")]
    reports = [r for r in reports if "finding" in r]  # image reports (not study roll-ups)
    sent = {str(pydicom.dcmread(p).SOPInstanceUID) for p in GOOD_FILES}
    assert {r["source"]["sop_instance_uid"] for r in reports} == sent


@pytest.mark.skipif(DCMTK_STORESCU is None, reason="dcmtk (storescu) not installed")
def test_dcmtk_storescu_to_the_app(tiny_settings, components, tmp_path):
    """dcmtk's storescu, a client written elsewhere, as the sending modality."""
    from burnscope.applications.burn_triage.runner import run_triage

    port = free_port()
    result = {}

    def send():
        result["proc"] = storescu_send(port, GOOD_FILES)

    thread = in_background(send)
    summary = run_triage(_scp_settings(tiny_settings, port, len(GOOD_FILES)), tmp_path / "in", tmp_path / "out", components)
    thread.join(timeout=30)
    assert result["proc"].returncode == 0, result["proc"].stderr
    assert summary["reports"] == _expected_counts()[0]


def test_watched_folder_feeds_the_app(tiny_settings, components, tmp_path):
    import time

    from burnscope.applications.burn_triage.runner import run_triage

    watched = tmp_path / "incoming"
    watched.mkdir()
    source_file = SAMPLE / "study-001" / "IMG-0001.dcm"

    def drop():  # a file lands after the app started, written in two pieces
        time.sleep(1.0)
        data = source_file.read_bytes()
        with open(watched / "IMG-0001.dcm", "wb") as handle:
            handle.write(data[: len(data) // 2])
            handle.flush()
            time.sleep(0.3)  # shorter than settle_seconds: the half file must not be read
            handle.write(data[len(data) // 2 :])

    source = dict(tiny_settings["source"], kind="watch", max_files=1, stop_after_idle=20,
                  watch={"poll_interval": 0.1, "settle_seconds": 1.0})
    settings = dict(tiny_settings, source=source, report=dict(tiny_settings["report"], formats=["json"]))
    thread = in_background(drop)
    summary = run_triage(settings, watched, tmp_path / "out", components)
    thread.join(timeout=10)
    assert summary["images"] == summary["reports"] == 1 and summary["errors"] == 0
    assert (tmp_path / "out" / "IMG-0001.json").is_file()


def test_series_rules_pick_only_vl_photographic_images(tmp_path):
    """--select: the app processes only the series the rules pick (here VL Photographic Image)."""
    rules = {"selections": [{"name": "photographs", "include": {"SOPClassUID": "1.2.840.10008.5.1.4.1.1.77.1.4"}}]}
    (tmp_path / "rules.json").write_text(json.dumps(rules))
    config = tmp_path / "tiny.yaml"
    config.write_text("inference:\n  model_config: biomedclip-tiny\nreport:\n  formats: [json]\n")
    out = tmp_path / "out"
    result = runner.invoke(cli_app, ["run", "burn-triage", "-i", str(SAMPLE), "-o", str(out), "-c", str(config),
                                     "-q", "--select", str(tmp_path / "rules.json")])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    photos = [f for f in MANIFEST["files"] if f.get("sop_class_uid") == "1.2.840.10008.5.1.4.1.1.77.1.4"]
    accepted = [f for f in photos if f["expected"] == "accepted"]
    assert summary["images"] == summary["reports"] == sum(f["frames"] for f in accepted)
    others = [f for f in MANIFEST["files"] if f.get("sop_class_uid") and f not in photos]
    assert summary["skipped_by_selection"] == len(others) > 0
    sop_classes = {json.loads(p.read_text())["source"]["sop_class_uid"] for p in out.rglob("IMG-*.json")}
    assert sop_classes == {"1.2.840.10008.5.1.4.1.1.77.1.4"}


def test_decoding_in_a_process_pool_gives_the_same_reports(tiny_settings, components, triage_run, tmp_path):
    from burnscope.applications.burn_triage.runner import run_triage

    settings = dict(tiny_settings, source=dict(tiny_settings["source"], executor="process", workers=2))
    summary = run_triage(settings, SAMPLE, tmp_path, components)
    assert summary["images"] == summary["reports"] == _expected_counts()[0]
    assert summary["error_reasons"] == triage_run[0]["error_reasons"]
    _assert_same_probabilities(triage_run[1], tmp_path, atol=1e-6)  # same decode, same numbers


def test_default_scheduler_enqueues_every_report_for_delivery(tiny_settings, components, tmp_path, fhir_endpoint):
    from burnscope.applications.burn_triage.runner import run_triage

    server, endpoint = fhir_endpoint
    settings = _with_fhir(tiny_settings, f"http://127.0.0.1:{server.server_port}/fhir", drain_s=20)
    assert settings["scheduler"]["kind"] == "event_based" and settings["scheduler"]["worker_threads"] > 1
    summary = run_triage(settings, SAMPLE, tmp_path, components)
    images, bad = _expected_counts()
    assert summary["delivery"]["enqueued"] == summary["reports"] == images, (summary, _outbox_rows(tmp_path / "outbox.sqlite"))
    assert len(endpoint.received) == images
    acc = summary["accounting"]
    assert (acc["accepted"], acc["reported"], acc["errors"], acc["lost"]) == (images + len(bad), images, len(bad), 0)
    assert acc["queued_for_delivery"] == images and summary["run"]["outcome"] == "drained"
