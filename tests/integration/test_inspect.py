"""``burnscope inspect``: one line per image (frame) or error, .npy dumps, no PHI by default."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import typer
from typer.testing import CliRunner

from burnscope.applications.cli import cmd_dicom
from burnscope.operators.dicom_loader.core import DicomLoader
from fixtures import SAMPLE_DATA

SAMPLE = SAMPLE_DATA
MANIFEST = json.loads((SAMPLE / "manifest.json").read_text())
PHI = [v for p in MANIFEST["patients"] for v in (p["name"], p["patient_id"], p["birth_date"])]


def _app() -> typer.Typer:
    app = typer.Typer()
    cmd_dicom.register(app, typer.Typer())

    @app.callback()
    def _root() -> None:  # keeps "inspect" a sub-command, as in the real CLI
        pass

    return app


def _invoke(*args: str):
    return CliRunner().invoke(_app(), ["inspect", *args])


def test_inspect_json_lists_every_frame_and_error():
    result = _invoke(str(SAMPLE), "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["images"] == 10 and doc["errors"] == 2
    by_path = {}
    for item in doc["items"]:
        by_path.setdefault(Path(item["path"]).relative_to(SAMPLE).as_posix(), []).append(item)
    for entry in MANIFEST["files"]:
        items = by_path[entry["path"]]
        if entry["expected"] == "error":
            assert [i["reason"] for i in items] == [entry["reason"]]
            continue
        assert [i["frame"] for i in items] == list(range(1, entry["frames"] + 1))
        for item in items:
            assert item["decision"] == "accepted"
            assert item["sop_instance_uid"] == entry["sop_instance_uid"]
            assert item["sop_class_uid"] == entry["sop_class_uid"]
            assert item["transfer_syntax_uid"] == entry["transfer_syntax_uid"]
            assert item["photometric_interpretation"] == entry["photometric_interpretation"]
            assert (item["rows"], item["columns"]) == (entry["rows"], entry["columns"])
    truncated = by_path["study-002/IMG-0003-truncated.dcm"][0]
    assert truncated["sop_instance_uid"] and truncated["photometric_interpretation"] == "RGB"


def test_inspect_has_no_phi_unless_asked():
    plain = _invoke(str(SAMPLE))
    as_json = _invoke(str(SAMPLE), "--json")
    for output in (plain.output, as_json.output):
        for phi in PHI:
            assert phi not in output
    shown = _invoke(str(SAMPLE / "study-001"), "--json", "--show-phi")
    assert "MARTINEZ^ELENA^ROSA" in shown.stdout and "BSN-4471203" in shown.stdout


def test_dump_writes_exactly_what_preprocessing_gets(tmp_path):
    result = _invoke(str(SAMPLE / "study-003"), "--dump", str(tmp_path), "--json")
    assert result.exit_code == 0, result.output
    index = json.loads((tmp_path / "index.json").read_text())
    assert len(index) == 5
    images, _ = DicomLoader(workers=1).load(SAMPLE / "study-003")
    for entry, record in zip(index, images):
        array = np.load(entry["dump"])
        assert array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3
        np.testing.assert_array_equal(array, record.pixels)
        assert entry["path"] == record.context.source and entry["frame"] == record.context.frame_number
        assert Path(record.context.source).name in Path(entry["dump"]).name
        assert f"frame{record.context.frame_number:04d}" in Path(entry["dump"]).name


def test_table_output_and_exit_codes(tmp_path):
    table = _invoke(str(SAMPLE / "study-002"))
    assert table.exit_code == 0
    assert "truncated" in table.output and "VLPhotographicImageStorage" in table.output
    only_bad = _invoke(str(SAMPLE / "notes.txt"))
    assert only_bad.exit_code == 1 and "not_dicom" in only_bad.output
    missing = _invoke(str(tmp_path / "absent"))
    assert missing.exit_code == 2


def test_registered_in_the_burnscope_cli():
    from burnscope.applications.cli import main

    assert main(["inspect", str(SAMPLE / "study-001" / "IMG-0001.dcm"), "--json"]) == 0
