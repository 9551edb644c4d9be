"""Every input the fuzzers (``fuzz/``) found a bug with, replayed against the fixed code.

Each file under ``tests/fixtures/fuzz_regressions/<harness>/`` goes through that harness's
``TestOneInput`` (its pass condition: no exception outside the structured error taxonomy), and
the test then checks what the fixed code does with it.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from io import BytesIO
from pathlib import Path
from types import SimpleNamespace

import pytest
from fixtures import REPO

FUZZ = REPO / "fuzz"
REGRESSIONS = REPO / "tests" / "fixtures" / "fuzz_regressions"

pytest.importorskip("atheris")


def _harness(name: str):
    if str(FUZZ) not in sys.path:
        sys.path.insert(0, str(FUZZ))
    spec = importlib.util.spec_from_file_location(f"fuzz_{name}", FUZZ / f"fuzz_{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _inputs(name: str) -> list[Path]:
    return sorted((REGRESSIONS / name).iterdir())


CASES = [(h, p) for h in ("loader", "photo", "case", "selector", "scp") for p in _inputs(h)]


@pytest.mark.parametrize("harness,path", CASES, ids=[f"{h}/{p.name}" for h, p in CASES])
def test_regression_input_passes_its_harness(harness, path):
    _harness(harness).TestOneInput(path.read_bytes())


def test_excess_frames_become_header_sized_rgb_images():
    from burnscope.operators.dicom_loader.core import DicomLoader

    loader = DicomLoader(isolate=False, workers=1, read_sidecars=False)
    for path in _inputs("loader"):
        result = loader.load_file_result(path)
        for record in result.images:
            assert record.pixels.ndim == 3 and record.pixels.shape[2] == 3, (path.name, record.pixels.shape)


def test_damaged_photos_are_value_errors(tmp_path):
    from burnscope.operators.dicom_loader.photo import wrap_photo

    for path in _inputs("photo"):
        photo = tmp_path / "p.bin"
        photo.write_bytes(path.read_bytes()[1:])  # the first byte picks the harness's metadata
        with pytest.raises((ValueError, OSError)):
            wrap_photo(photo, tmp_path / "p.dcm")


def test_case_with_a_non_string_region_is_a_case_error():
    from burnscope.operators.decision_support.core import CaseError, decide

    with pytest.raises(CaseError, match=r"burns\[0\]\.region"):
        decide({"burns": [{"region": ["head"], "depth": "full_thickness", "fraction": 0.5}]})


@pytest.mark.parametrize("rules", [
    '{"selections": [{"include": {"Modality": "XC"}}]} trailing',  # text that is not JSON
    {"selections": [{"include": ["Modality"]}]},  # include is not an object
    {"selections": [{"include": {"Rows": {"range": ["a", 3]}}}]},  # range of strings
    {"selections": [{"include": {"Modality": {"regex": 5}}}]},  # regex not a string
    {"selections": [{"include": {"Modality": {"present": "yes"}}}]},
    {"selections": [{"include": {"Modality": [["XC"]]}}]},
    "x" * 5000,  # a "path" too long for the file system
])
def test_bad_selector_rules_are_rule_errors(rules):
    from burnscope.operators.dicom_loader.selector import RuleError, SeriesSelector

    with pytest.raises(RuleError):
        SeriesSelector(rules)


def _store_event(ds_bytes: bytes, transfer_syntax: str = "1.2.840.10008.1.2"):
    from pynetdicom import evt
    from pynetdicom.dimse_primitives import C_STORE
    from pynetdicom.events import Event
    from pynetdicom.presentation import PresentationContext

    request = C_STORE()
    request.MessageID = 1
    request.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.4"
    request.AffectedSOPInstanceUID = "1.2.3"
    request.DataSet = BytesIO(ds_bytes)
    cx = PresentationContext()
    cx.context_id, cx.abstract_syntax, cx.transfer_syntax, cx.result = 1, request.AffectedSOPClassUID, [
        transfer_syntax], 0
    assoc = SimpleNamespace(requestor=SimpleNamespace(ae_title="TEST-SCU", address="127.0.0.1", port=1))
    return Event(assoc, evt.EVT_C_STORE, {"request": request, "context": cx.as_tuple})


def test_failed_store_leaves_no_part_file(tmp_path, caplog):
    from burnscope.operators.dicom_loader.scp import StoreSCP

    scp = StoreSCP(spool_dir=tmp_path / "spool", port=0)
    data = _inputs("scp")[0].read_bytes()
    syntaxes = _harness("scp").SYNTAXES
    with caplog.at_level("WARNING"):
        status = scp._on_store(_store_event(data[1:], syntaxes[data[0] % len(syntaxes)]))
    assert status == 0xC210
    assert list((tmp_path / "spool").iterdir()) == []
    # pydicom pastes the original traceback into its message; the log line leaves it out
    (line,) = [r.getMessage() for r in caplog.records if "C-STORE" in r.getMessage()]
    assert "Traceback" not in line and "\n" not in line


@pytest.mark.parametrize("uid", ["../../outside", "/tmp/abs", "1.2.3/../../x", "1.2." + "3" * 80])
def test_sop_instance_uid_cannot_name_a_file_outside_the_spool(tmp_path, uid):
    from pydicom.dataset import Dataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    from burnscope.operators.dicom_loader.scp import StoreSCP

    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.4"
    ds.SOPInstanceUID = uid
    ds.PatientName = "DOE^JANE"
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, True
    write_dataset(fp, ds)
    spool = tmp_path / "deep" / "spool"
    scp = StoreSCP(spool_dir=spool, port=0)
    assert scp._on_store(_store_event(fp.getvalue())) == 0xC210
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_regression_folders_hold_inputs():
    assert all(_inputs(h) for h in ("loader", "photo", "case", "selector", "scp"))
    json.dumps([str(p) for _, p in CASES])


def test_a_codec_that_takes_seconds_on_a_tiny_hostile_file_is_stopped():
    """CharLS (pyjpegls) spends 4–20 s on these small JPEG-LS files (32×32 px) before failing;
    the fuzzer's per-input limit flagged them. The isolated loader stops such a decode at its
    time limit and goes on with the next file."""
    from burnscope.operators.dicom_loader.core import DicomLoader

    paths = _inputs("loader_slow")
    assert len(paths) == 2
    with DicomLoader(workers=1, decode_timeout_s=0.5) as loader:
        results = list(loader.iter_file_results(paths))
        assert all(r.error is not None and r.error.reason in ("decode_timeout", "decode_failed") for r in results)
        assert loader.decode_pool.timed_out == sum(r.error.reason == "decode_timeout" for r in results)
        assert loader.load_file_result(REPO / "sample_data" / "study-001" / "IMG-0001.dcm").error is None
