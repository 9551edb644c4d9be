"""C-STORE round trip: an SCU sends the sample studies to the SCP source operator in a graph."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
GOOD_FILES = [p for p in sorted(SAMPLE.glob("study-*/*.dcm")) if "truncated" not in p.name]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_scp_app(port: int, send) -> list:
    from burnscope.operators.holoscan_runtime import holoscan  # noqa: F401
    from holoscan.core import Application, Operator

    from burnscope.operators.dicom_loader.operator import DicomStoreSCPSourceOp

    class Collect(Operator):
        def __init__(self, fragment, *args, **kwargs):
            self.images, self.errors = [], []
            super().__init__(fragment, *args, **kwargs)

        def setup(self, spec):
            spec.input("images")
            spec.input("errors")

        def compute(self, op_input, op_output, context):
            self.images += op_input.receive("images")
            self.errors += op_input.receive("errors")

    class App(Application):
        def compose(self):
            self.scp = DicomStoreSCPSourceOp(
                self, name="scp", ae_title="BURNSCOPE", port=port, max_files=len(GOOD_FILES),
                poll_interval=0.05, workers=2, sop_classes="all", stop_after_idle=20.0,
            )
            self.sink = Collect(self, name="collect")
            self.add_flow(self.scp, self.sink, {("images", "images"), ("errors", "errors")})

    app = App()
    thread = threading.Thread(target=send)
    thread.start()
    app.run()
    thread.join()
    return app


def _wait_for_port(port: int) -> None:
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("SCP did not start")


def test_pynetdicom_scu_round_trip():
    port = _free_port()
    statuses = []

    def send():
        _wait_for_port(port)
        ae = AE(ae_title="TESTSCU")
        datasets = [pydicom.dcmread(p) for p in GOOD_FILES]
        for ds in datasets:
            ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
        assoc = ae.associate("127.0.0.1", port, ae_title="BURNSCOPE")
        assert assoc.is_established
        for ds in datasets:
            statuses.append(assoc.send_c_store(ds).Status)
        assoc.release()

    app = _run_scp_app(port, send)
    assert statuses == [0] * len(GOOD_FILES)
    assert len(app.sink.images) == 10 and app.sink.errors == []
    sent = {str(pydicom.dcmread(p).SOPInstanceUID) for p in GOOD_FILES}
    assert {r.context.sop_instance_uid for r in app.sink.images} == sent


@pytest.mark.skipif(shutil.which("storescu") is None, reason="dcmtk (storescu) not installed")
def test_dcmtk_storescu_round_trip():
    port = _free_port()
    result = {}

    def send():
        _wait_for_port(port)
        result["proc"] = subprocess.run(
            ["storescu", "-aec", "BURNSCOPE", "-aet", "DCMTK", "-xy", "127.0.0.1", str(port),
             *map(str, GOOD_FILES)],
            capture_output=True, text=True, timeout=60,
        )

    app = _run_scp_app(port, send)
    assert result["proc"].returncode == 0, result["proc"].stderr
    assert len(app.sink.images) == 10 and app.sink.errors == []
