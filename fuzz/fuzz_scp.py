"""Fuzz the SCP's dataset handling: a C-STORE request's dataset bytes → spool file or a failure status.

Input: the first byte picks the presentation context's transfer syntax, the rest is the
dataset as an SCU sends it inside P-DATA. The harness builds pynetdicom's own ``Event`` for
``EVT_C_STORE`` around it (a C-STORE request primitive, the accepted context, an association
stand-in with the requestor's AE title) and calls ``StoreSCP._on_store``. Pass: it returns a
DIMSE status (``0x0000`` success or a failure code), never raises; on success exactly one file
lands *inside* the spool folder (a SOP Instance UID such as ``../x`` must not write elsewhere),
and the DICOM loader turns that file into images or a structured error record.
"""

from __future__ import annotations

from io import BytesIO
from types import SimpleNamespace

import atheris

with atheris.instrument_imports(include=["burnscope", "pydicom", "pynetdicom"]):
    from burnscope.operators.dicom_loader.core import REASONS, DicomLoader
    from burnscope.operators.dicom_loader.scp import DEFAULT_TRANSFER_SYNTAXES, StoreSCP
    from pynetdicom import evt
    from pynetdicom.dimse_primitives import C_STORE
    from pynetdicom.events import Event
    from pynetdicom.presentation import PresentationContext

import _harness

#: Index of the first byte → transfer syntax (seeds.py writes the same order).
SYNTAXES = [
    "1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.50",
]
assert set(SYNTAXES) <= {str(ts) for ts in DEFAULT_TRANSFER_SYNTAXES}
WORK = _harness.workdir("scp")
SPOOL = WORK / "spool"
SCP = StoreSCP(spool_dir=SPOOL, port=0)
LOADER = DicomLoader(workers=1, isolate=False, read_sidecars=False, max_pixels=4 * 1024 * 1024)
ASSOC = SimpleNamespace(requestor=SimpleNamespace(ae_title="FUZZ-SCU", address="127.0.0.1", port=40000))
_CONTEXTS = []
for i, uid in enumerate(SYNTAXES):
    cx = PresentationContext()
    cx.context_id = 2 * i + 1
    cx.abstract_syntax = "1.2.840.10008.5.1.4.1.1.77.1.4"
    cx.transfer_syntax = [uid]
    cx.result = 0x00
    _CONTEXTS.append(cx.as_tuple)


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    request = C_STORE()
    request.MessageID = 1
    request.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.4"
    request.AffectedSOPInstanceUID = "1.2.3.4"
    request.DataSet = BytesIO(data[1:])
    event = Event(ASSOC, evt.EVT_C_STORE, {"request": request, "context": _CONTEXTS[data[0] % len(_CONTEXTS)]})
    for old in SPOOL.iterdir():
        old.unlink()
    before = SCP.received_count
    status = SCP._on_store(event)
    assert isinstance(status, int), status
    written = [p for p in WORK.rglob("*") if p.is_file()]
    if status != 0x0000:
        assert not written, written  # a failed store leaves nothing behind (no .part file)
        return
    assert SCP.received_count == before + 1
    final = SCP.drain()
    assert len(final) == 1 and final[0].parent == SPOOL, final
    assert written == final, (written, final)
    result = LOADER.load_file_result(final[0])
    assert result.error is None or result.error.reason in REASONS, result.error


if __name__ == "__main__":
    _harness.quiet()
    _harness.main(TestOneInput)
