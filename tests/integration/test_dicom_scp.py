"""C-STORE round trip: an SCU sends the sample studies to the SCP source operator in a graph."""

from __future__ import annotations


import pydicom
import pytest
from fixtures.dicom_helpers import DCMTK_STORESCU, GOOD_FILES, free_port, pynetdicom_send, run_source_graph, storescu_send

pytestmark = pytest.mark.network


def _run_scp_app(port: int, send) -> list:
    from burnscope.operators.dicom_loader.operator import DicomStoreSCPSourceOp

    def scp(app):
        return DicomStoreSCPSourceOp(
            app, name="scp", ae_title="BURNSCOPE", port=port, max_files=len(GOOD_FILES),
            poll_interval=0.05, workers=2, sop_classes="all", stop_after_idle=20.0,
        )

    return run_source_graph(scp, background=send)


def test_pynetdicom_scu_round_trip():
    port = free_port()
    statuses = []

    def send():
        statuses.extend(pynetdicom_send(port, GOOD_FILES, ae_title="TESTSCU"))

    app = _run_scp_app(port, send)
    assert statuses == [0] * len(GOOD_FILES)
    assert len(app.sink.images) == 10 and app.sink.errors == []
    sent = {str(pydicom.dcmread(p).SOPInstanceUID) for p in GOOD_FILES}
    assert {r.context.sop_instance_uid for r in app.sink.images} == sent


@pytest.mark.skipif(DCMTK_STORESCU is None, reason="dcmtk (storescu) not installed")
def test_dcmtk_storescu_round_trip():
    port = free_port()
    result = {}

    def send():
        result["proc"] = storescu_send(port, GOOD_FILES)

    app = _run_scp_app(port, send)
    assert result["proc"].returncode == 0, result["proc"].stderr
    assert len(app.sink.images) == 10 and app.sink.errors == []
