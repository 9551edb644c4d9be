"""The reporting pool: worker processes render the standards formats byte-identically to the
emitter in one process (tools/compare_reports.py on the written folders), STAT first; a dying
worker costs its reports' standards artefacts only; STAT says so in JSON, text, PDF and FHIR."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import time

import numpy as np
import pytest
from fixtures import REPO
from fixtures.examples import example_decision

from burnscope.common.messages import ROUTINE, STAT
from burnscope.operators.report.core import ReportEmitter, render_standard
from burnscope.operators.report.pool import ReportingPool, default_workers
from burnscope.operators.sinks.folder import FolderSink

FORMATS = ["json", "txt", "sr", "pdf", "pdf_dcm", "fhir", "sc"]
EPOCH = "1764633600"


def _compare():
    spec = importlib.util.spec_from_file_location("compare_reports", REPO / "tools" / "compare_reports.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.compare


def _decisions(n: int, stat: set[int] = frozenset()):
    thumb = np.arange(64 * 48 * 3, dtype=np.uint8).reshape(48, 64, 3)
    out = []
    for i in range(n):
        d = example_decision(source=f"/in/study/img{i:02d}.dcm", sop_uid=f"1.2.826.0.1.3680043.8.498.{100 + i}",
                             thumbnail=thumb)
        if i in stat:
            d.finding.context.priority, d.finding.context.priority_reason = STAT, "dimse_priority_high"
        out.append(d)
    return out


def test_default_workers_leave_a_core_to_the_graph():
    assert [default_workers(c) for c in (1, 2, 4, 16, 64)] == [1, 1, 3, 8, 8]


def test_pool_reports_are_byte_identical_to_rendering_in_one_process(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    decisions = _decisions(6, stat={4})
    inline = ReportEmitter(FORMATS, source_root="/in")
    FolderSink(tmp_path / "inline").write_all(inline.emit(decisions) + inline.study_rollups())

    emitter = ReportEmitter(FORMATS, source_root="/in")
    with ReportingPool(workers=2) as pool:
        for d in decisions:
            pool.submit(emitter.prepare(d, emitter.stem_for(d)), d.finding.context.priority)
        done = pool.drain(timeout_s=120)
    assert len(done) == 6 and pool.pending == 0 and pool.rendered == 6
    # the emitter's per-run state stayed here: instance numbers follow the order of prepare()
    bundles = [emitter.finish(r.task) for r in done]
    FolderSink(tmp_path / "pool").write_all(bundles + emitter.study_rollups())
    assert _compare()(tmp_path / "inline", tmp_path / "pool") == []
    assert len(list((tmp_path / "pool").rglob("*.sc.dcm"))) == 6


def test_stat_overtakes_every_queued_routine_report():
    emitter = ReportEmitter(["json", "pdf"])
    decisions = _decisions(8, stat={6, 7})
    with ReportingPool(workers=1) as pool:
        for d in decisions:
            pool.submit(emitter.prepare(d, emitter.stem_for(d)), d.finding.context.priority)
        order = [r.task.decision.finding.context.sop_instance_uid[-3:] for r in pool.drain(timeout_s=120)]
    # the first routine task was already with the worker; both STAT ones come next
    assert order[1:3] == ["106", "107"], order
    assert sorted(order) == [f"{100 + i}" for i in range(8)]


def test_a_dying_worker_costs_the_standards_artefacts_only(monkeypatch):
    emitter = ReportEmitter(["json", "txt", "pdf"])
    pool = ReportingPool(workers=1).start()
    try:
        pid = next(iter(pool._executor._processes))
        (d,) = _decisions(1)
        pool.submit(emitter.prepare(d, emitter.stem_for(d)), ROUTINE)
        os.kill(pid, signal.SIGKILL)
        (rendered,) = pool.drain(timeout_s=60)
        bundle = emitter.finish(rendered.task)
        assert set(bundle.artefacts) == {".json", ".txt"}
        assert [e.reason for e in bundle.errors] == ["report_pdf_failed"]
        assert json.loads(bundle.artefacts[".json"])["render_errors"][0]["format"] == "pdf"
        # the pool was restarted and renders again
        (d2,) = _decisions(1)
        pool.submit(emitter.prepare(d2, "again"), ROUTINE)
        (ok,) = pool.drain(timeout_s=60)
        assert ".pdf" in ok.task.bundle.artefacts and pool.restarts >= 1
    finally:
        pool.close()


def test_zero_workers_render_inline():
    emitter = ReportEmitter(["json", "fhir"])
    pool = ReportingPool(workers=0)
    (d,) = _decisions(1)
    pool.submit(emitter.prepare(d, "x"), ROUTINE)
    (r,) = pool.collect()
    assert ".fhir.json" in r.task.bundle.artefacts and pool.pending == 0


def test_stat_reports_say_stat_in_json_text_pdf_and_fhir():
    from fhir.resources.R4B.bundle import Bundle

    emitter = ReportEmitter(["json", "txt", "pdf", "fhir"])
    stat, routine = _decisions(2, stat={0})
    b = emitter.emit_one(stat)
    report = json.loads(b.artefacts[".json"])
    assert report["priority"] == {"level": "stat", "reason": "dimse_priority_high"}
    assert "PRIORITY: STAT - handled in the emergency lane (sent with DICOM priority HIGH)" in b.artefacts[".txt"].decode()
    fhir = json.loads(b.artefacts[".fhir.json"])
    Bundle.model_validate(fhir)
    resources = {e["resource"]["resourceType"]: e["resource"] for e in fhir["entry"]}
    request, report_res = resources["ServiceRequest"], resources["DiagnosticReport"]
    assert request["priority"] == "stat" and request["intent"] == "filler-order"
    sr_url = next(e["fullUrl"] for e in fhir["entry"] if e["resource"]["resourceType"] == "ServiceRequest")
    assert report_res["basedOn"] == [{"reference": sr_url}]
    assert report_res["meta"]["tag"][0]["code"] == "S" and "STAT" in report_res["conclusion"]
    pdf_text = _pdf_text(b.artefacts[".pdf"])
    assert "STAT - handled in the emergency lane" in pdf_text
    # routine reports: no priority block, no ServiceRequest, no tag
    r = emitter.emit_one(routine)
    assert "priority" not in json.loads(r.artefacts[".json"]) and "PRIORITY" not in r.artefacts[".txt"].decode()
    kinds = [e["resource"]["resourceType"] for e in json.loads(r.artefacts[".fhir.json"])["entry"]]
    assert "ServiceRequest" not in kinds and "STAT" not in _pdf_text(r.artefacts[".pdf"])


def _pdf_text(data: bytes) -> str:
    import shutil
    import subprocess

    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) not installed")
    return subprocess.run(["pdftotext", "-", "-"], input=data, capture_output=True, check=True).stdout.decode()


def test_json_and_text_only_never_go_to_a_worker():
    emitter = ReportEmitter(["json", "txt"])
    pool = ReportingPool(workers=2)  # not started: nothing may need it
    (d,) = _decisions(1)
    pool.submit(emitter.prepare(d, "x"), ROUTINE)
    (r,) = pool.collect()
    assert pool._executor is None and emitter.finish(r.task).artefacts.keys() == {".json", ".txt"}


def test_a_long_running_emitter_forgets_the_oldest_studies():
    emitter = ReportEmitter(["json"], max_studies=2)
    for i in range(5):
        emitter.emit_one(example_decision(study_uid=f"1.2.3.{i}", sop_uid=f"1.2.3.{i}.1", source=f"/in/{i}.dcm"))
    assert list(emitter.state["studies"]) == ["1.2.3.3", "1.2.3.4"]
    assert list(emitter.state["study_order"]) == ["1.2.3.3", "1.2.3.4"]
