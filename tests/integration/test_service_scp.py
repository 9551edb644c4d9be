"""The service's SCP: a client that connects and sends nothing, or sends its association request
byte by byte, never holds up another modality (pynetdicom's timeouts close it); after
stop_accepting() new associations are rejected transiently while one under way finishes; the
C-STORE's DIMSE Priority and calling AE make STAT; the service source emits STAT first."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from fixtures.orthanc_local import free_port
from fixtures.service import copies
from pynetdicom import AE

from burnscope.operators.dicom_loader.service import ServiceStoreSCP
from burnscope.operators.priority.core import PriorityRules

pytestmark = pytest.mark.network


@pytest.fixture()
def scp(tmp_path):
    rules = PriorityRules.from_settings({"stat_calling_aets": ["ED_CAMERA"]})
    server = ServiceStoreSCP(port=free_port(), spool_dir=tmp_path / "spool", priority_rules=rules,
                             timeouts={"acse_s": 2, "dimse_s": 2, "network_s": 2})
    server.start()
    yield server
    server.stop()


def _associate(port: int, datasets, ae_title: str = "MODALITY"):
    ae = AE(ae_title=ae_title)
    ae.acse_timeout = 5
    for ds in datasets:
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    return ae.associate("127.0.0.1", port, ae_title="BURNSCOPE")


def test_silent_and_slow_clients_never_block_others_and_are_closed(scp):
    silent = socket.create_connection(("127.0.0.1", scp.port))
    slow = socket.create_connection(("127.0.0.1", scp.port))
    stop = threading.Event()

    def dribble():  # the first bytes of an A-ASSOCIATE-RQ, one every half second
        for byte in b"\x01\x00\x00\x00\x00\xcd\x00\x01":
            if stop.is_set():
                return
            try:
                slow.send(bytes([byte]))
            except OSError:
                return
            time.sleep(0.5)

    threading.Thread(target=dribble, daemon=True).start()
    try:
        started = time.monotonic()
        datasets = copies(3)
        assoc = _associate(scp.port, datasets)
        assert assoc.is_established
        assert [assoc.send_c_store(ds).Status for ds in datasets] == [0, 0, 0]
        assoc.release()
        assert time.monotonic() - started < 5  # not held up by the two stuck connections
        silent.settimeout(15)
        t0 = time.monotonic()
        try:  # the SCP gives up on the silent connection after its timeouts and closes it
            data = silent.recv(1024)
            while data and data[0] == 0x07:  # an A-ABORT first
                data = silent.recv(1024)
        except ConnectionResetError:
            data = b""
        assert data == b"" and time.monotonic() - t0 < 12
    finally:
        stop.set()
        silent.close()
        slow.close()
    assert len(scp.drain()) == 3


def test_dimse_priority_and_calling_ae_are_kept_per_instance(scp):
    high, medium, camera = copies(3)
    for ds, priority, aet in ((high, 1, "MODALITY"), (medium, 0, "MODALITY"), (camera, 2, "ED_CAMERA")):
        assoc = _associate(scp.port, [ds], ae_title=aet)
        assert assoc.send_c_store(ds, priority=priority).Status == 0
        assoc.release()
    reasons = {p.stem: scp.transfer_of(p)[0] for p in scp.drain()}
    assert reasons == {high.SOPInstanceUID: "dimse_priority_high", medium.SOPInstanceUID: "",
                       camera.SOPInstanceUID: "calling_aet"}


def test_stop_accepting_rejects_new_associations_transiently_while_one_under_way_finishes(scp):
    first, second, third = copies(3)
    ongoing = _associate(scp.port, [first, second])
    assert ongoing.is_established
    assert ongoing.send_c_store(first).Status == 0
    scp.stop_accepting()
    refused = _associate(scp.port, [third])
    assert refused.is_rejected and not refused.is_established
    assert ongoing.send_c_store(second).Status == 0  # the association under way is served
    ongoing.release()
    time.sleep(0.2)
    assert scp.rejected == 1 and scp.active_associations == 0
    assert len(scp.drain()) == 2
