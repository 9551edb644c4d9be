"""Folder and error sinks: atomic writes, no silent overwrite, a tiny Holoscan graph."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

from burnscope.common.messages import ErrorRecord
from burnscope.operators.report.core import ReportBundle, ReportEmitter
from fixtures.examples import example_decision
from burnscope.operators.sinks.folder import ErrorSink, FolderSink, write_atomic

FIXED = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)


def _bundle(text: str = "a", stem: str = "burn_0001") -> ReportBundle:
    return ReportBundle(stem=stem, artefacts={".json": f'{{"x": "{text}"}}'.encode(), ".txt": text.encode()})


def _no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]


def test_writes_then_skips_identical_then_revises_different(tmp_path):
    sink = FolderSink(tmp_path)
    assert sink.write(_bundle("a")).status == "written"
    assert (tmp_path / "burn_0001.json").read_bytes() == b'{"x": "a"}'
    assert sink.write(_bundle("a")).status == "unchanged"
    result = sink.write(_bundle("b"))
    assert result.status == "written" and result.stem == "burn_0001_r2"
    assert (tmp_path / "burn_0001.txt").read_bytes() == b"a"  # the first report is untouched
    assert (tmp_path / "burn_0001_r2.txt").read_bytes() == b"b"
    assert sink.write(_bundle("b")).status == "unchanged"  # found as revision 2
    assert sink.write(_bundle("c")).stem == "burn_0001_r3"
    assert (sink.written, sink.unchanged, sink.new, sink.errors, sink.files_written) == (5, 2, 3, 0, 6)
    assert sorted(p.name for p in tmp_path.iterdir())[:2] == ["burn_0001.json", "burn_0001.txt"]
    assert _no_temp_files(tmp_path)


def test_partly_written_bundle_is_completed_not_revised(tmp_path):
    (tmp_path / "burn_0001.json").write_bytes(b'{"x": "a"}')  # a crash left only the JSON
    sink = FolderSink(tmp_path)
    result = sink.write(_bundle("a"))
    assert result.status == "written" and result.stem == "burn_0001"
    assert result.paths == [tmp_path / "burn_0001.txt"]


def test_write_atomic_never_replaces_when_asked_not_to(tmp_path):
    target = tmp_path / "r.json"
    assert write_atomic(target, b"one", overwrite=False)
    assert not write_atomic(target, b"two", overwrite=False)
    assert target.read_bytes() == b"one"
    assert write_atomic(target, b"three")
    assert target.read_bytes() == b"three"
    assert _no_temp_files(tmp_path)


def test_unwritable_folder_is_counted_not_raised(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    sink = FolderSink(blocker / "out")
    result = sink.write(_bundle())
    assert result.status == "error" and sink.errors == 1 and sink.written == 0


def test_error_sink_appends_json_lines_and_counts(tmp_path):
    sink = ErrorSink(tmp_path)
    assert sink.write([]) == 0
    assert not (tmp_path / "errors.jsonl").exists()
    sink.write(
        [
            ErrorRecord("/in/bad.dcm", "corrupt", "truncated file"),
            ErrorRecord("/in/x.txt", "not_dicom", "no DICM preamble"),
        ]
    )
    sink.write(
        [ErrorRecord("/in/bad2.dcm", "corrupt", "truncated", sop_instance_uid="1.2.3", stage="decode")]
    )
    lines = [json.loads(l) for l in (tmp_path / "errors.jsonl").read_text().splitlines()]
    assert [l["reason"] for l in lines] == ["corrupt", "not_dicom", "corrupt"]
    assert lines[2]["sop_instance_uid"] == "1.2.3" and lines[2]["stage"] == "decode" and "time" in lines[0]
    assert (sink.errors, sink.written) == (3, 3)
    assert sink.by_reason == {"corrupt": 2, "not_dicom": 1}
    # A second sink (a restarted app) appends rather than truncating.
    ErrorSink(tmp_path).write([ErrorRecord("/in/y", "corrupt", "m")])
    assert len((tmp_path / "errors.jsonl").read_text().splitlines()) == 4


def test_holoscan_graph_source_emitter_folder_and_error_sinks(tmp_path):
    from burnscope.operators.holoscan_runtime import holoscan  # noqa: F401
    from holoscan.conditions import CountCondition
    from holoscan.core import Application, Operator, OperatorSpec

    from burnscope.operators.report.operator import ReportEmitterOp
    from burnscope.operators.sinks.operator import ErrorSinkOp, FolderSinkOp

    batches = [
        [example_decision(), example_decision(frame=2)],
        [],  # an empty batch passes through
        [example_decision(source="/in/burn_0002.dcm", demo=False)],
    ]
    error_batches = [[ErrorRecord("/in/bad.dcm", "corrupt", "truncated")], [], []]

    class Source(Operator):
        def setup(self, spec: OperatorSpec):
            spec.output("decisions")
            spec.output("errors")

        def compute(self, op_input, op_output, context):
            i = self.count = getattr(self, "count", -1) + 1
            op_output.emit(batches[i], "decisions")
            op_output.emit(error_batches[i], "errors")

    class App(Application):
        def compose(self):
            src = Source(self, CountCondition(self, len(batches)), name="source")
            self.emitter = ReportEmitterOp(
                self, name="report", emitter=ReportEmitter(clock=lambda: FIXED), study_rollup=True
            )
            self.folder = FolderSinkOp(self, name="folder", out_dir=str(tmp_path))
            self.error_sink = ErrorSinkOp(self, name="errors", out_dir=str(tmp_path))
            self.add_flow(src, self.emitter, {("decisions", "decisions")})
            self.add_flow(self.emitter, self.folder, {("reports", "reports")})
            self.add_flow(src, self.error_sink, {("errors", "errors")})

    app = App()
    app.run()
    assert app.folder.written == 3 and app.folder.errors == 0
    assert app.error_sink.errors == 1 and app.error_sink.written == 1
    assert app.folder.labels == {"deep_partial_thickness": 3} and app.error_sink.reasons == {"corrupt": 1}
    names = sorted(os.listdir(tmp_path))
    assert names == [
        "burn_0001.json",
        "burn_0001.txt",
        "burn_0001_f2.json",
        "burn_0001_f2.txt",
        "burn_0002.json",
        "burn_0002.txt",
        "errors.jsonl",
        "study_1.2.826.0.1.3680043.8.498.11.json",
        "study_1.2.826.0.1.3680043.8.498.11.txt",
    ]
    rollup = json.loads((tmp_path / "study_1.2.826.0.1.3680043.8.498.11.json").read_text())
    assert rollup["image_count"] == 3 and app.folder.sink.rollups_written == 2  # replaced once
    assert json.loads((tmp_path / "burn_0002.json").read_text())["demo_model"] is False
    assert (tmp_path / "burn_0001.txt").read_text().lstrip("=\n").startswith("DEMO MODEL")


def test_bundle_error_records_land_in_errors_jsonl(tmp_path):
    bundle = _bundle("a")
    bundle.errors.append(
        ErrorRecord("/in/burn_0001.dcm", "report_sr_failed", "boom", "1.2.3", stage="report")
    )
    sink = FolderSink(tmp_path)
    assert sink.write(bundle).status == "written"
    [line] = (tmp_path / "errors.jsonl").read_text().splitlines()
    assert json.loads(line)["reason"] == "report_sr_failed" and sink.render_errors.errors == 1


def test_sub_folder_stems_are_written_and_escapes_refused(tmp_path):
    sink = FolderSink(tmp_path)
    assert sink.write(_bundle("a", stem="study-001/IMG-0001")).status == "written"
    assert (tmp_path / "study-001" / "IMG-0001.json").exists()
    assert sink.write(_bundle("a", stem="../outside")).status == "error"
    assert not (tmp_path.parent / "outside.json").exists() and sink.errors == 1


def test_study_rollup_is_replaced_not_revised(tmp_path):
    sink = FolderSink(tmp_path)
    first = ReportBundle(stem="s1/study", artefacts={".json": b"{1}"}, kind="study")
    fuller = ReportBundle(stem="s1/study", artefacts={".json": b"{1,2}"}, kind="study")
    assert sink.write(first).status == "written" and sink.write(first).status == "unchanged"
    assert sink.write(fuller).status == "written"
    assert (tmp_path / "s1" / "study.json").read_bytes() == b"{1,2}"
    assert not (tmp_path / "s1" / "study_r2.json").exists()
    assert (sink.written, sink.rollups_written) == (0, 2)


def test_a_long_running_sink_keeps_only_its_last_results_in_memory(tmp_path):
    """A watch service writes for weeks: the sinks' in-memory lists are bounded, the files and
    counters are not."""
    sink = FolderSink(tmp_path, keep_results=3)
    for i in range(5):
        sink.write(_bundle(str(i), stem=f"burn_{i:04d}"))
    assert [r.stem for r in sink.results] == ["burn_0002", "burn_0003", "burn_0004"]
    assert sink.results[-1].paths == [tmp_path / "burn_0004.json", tmp_path / "burn_0004.txt"]
    assert (sink.written, sink.files_written) == (5, 10)
    assert len(list(tmp_path.glob("burn_*.json"))) == 5

    errors = ErrorSink(tmp_path, keep_records=2)
    for i in range(4):
        errors.write([ErrorRecord(f"/in/{i}.dcm", "corrupt", "truncated file")])
    assert [r.source for r in errors.records] == ["/in/2.dcm", "/in/3.dcm"]
    assert (errors.errors, errors.written) == (4, 4)
    assert len((tmp_path / "errors.jsonl").read_text().splitlines()) == 4
    assert len(FolderSink(tmp_path / "default").results) == 0
    assert FolderSink(tmp_path / "default").results.maxlen == 1000
