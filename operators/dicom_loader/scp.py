"""A DICOM C-STORE SCP (pynetdicom) without Holoscan: receives images into a spool folder.

Each received instance is written to ``spool_dir`` under a temporary name and renamed into
place, so a reader never sees half a file; its path is then put on :attr:`StoreSCP.received`.
Log lines name the SOP Instance UID and the calling AE title, never the patient.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLossless,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, evt
from pynetdicom.presentation import AllStoragePresentationContexts

from burnscope.operators.dicom_loader.records import one_line

log = logging.getLogger("burnscope.dicom_loader.scp")

#: Photographic and secondary-capture storage classes: what a burn workflow receives.
DEFAULT_SOP_CLASSES = (
    "1.2.840.10008.5.1.4.1.1.77.1.4",  # VL Photographic Image
    "1.2.840.10008.5.1.4.1.1.77.1.2",  # VL Microscopic Image
    "1.2.840.10008.5.1.4.1.1.77.1.1",  # VL Endoscopic Image
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.7.4",  # Multi-frame True Color Secondary Capture
    "1.2.840.10008.5.1.4.1.1.7.2",  # Multi-frame Grayscale Byte Secondary Capture
    "1.2.840.10008.5.1.4.1.1.7.3",  # Multi-frame Grayscale Word Secondary Capture
)
#: Transfer syntaxes the loader decodes; offered for every accepted SOP class.
DEFAULT_TRANSFER_SYNTAXES = (
    ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian,
    JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLossless, JPEGLosslessSV1, JPEGLSLossless, JPEGLSNearLossless,
    JPEG2000Lossless, JPEG2000, RLELossless,
)


#: A DICOM UID as a file name: up to 64 characters, digit groups separated by dots (leading
#: zeros, which PS3.5 §9.1 forbids but some devices send, are let through).
_UID = re.compile(r"(?=.{1,64}$)[0-9]+(\.[0-9]+)*")


def _one_line(exc: Exception) -> str:
    return f"{type(exc).__name__}: {one_line(str(exc), 200)}"


class StoreSCP:
    """C-STORE SCP that spools what it receives.

    Parameters:
        ae_title: this SCP's AE title.
        port: TCP port (0 picks a free one; see :attr:`port` after :meth:`start`).
        bind_address: interface to listen on (default loopback; "0.0.0.0" for all).
        sop_classes: accepted storage SOP class UIDs, or ``"all"`` for every storage class.
        transfer_syntaxes: accepted transfer syntaxes.
        max_pdu: maximum PDU size this SCP receives (bytes, 0 = unlimited).
        spool_dir: where received files go (default: a new temporary folder).
    """

    def __init__(
        self,
        ae_title: str = "BURNSCOPE",
        port: int = 11112,
        bind_address: str = "127.0.0.1",
        sop_classes: Iterable[str] | str = DEFAULT_SOP_CLASSES,
        transfer_syntaxes: Iterable[str] = DEFAULT_TRANSFER_SYNTAXES,
        max_pdu: int = 16382,
        spool_dir: str | os.PathLike | None = None,
    ) -> None:
        self.ae_title = ae_title
        self.bind_address = bind_address
        self.requested_port = int(port)
        self.spool_dir = Path(spool_dir) if spool_dir else Path(tempfile.mkdtemp(prefix="burnscope-scp-"))
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self.received: queue.Queue[Path] = queue.Queue()
        self.received_count = 0
        self._ae = AE(ae_title=ae_title)
        self._ae.maximum_pdu_size = int(max_pdu)
        syntaxes = list(transfer_syntaxes)
        if sop_classes == "all":
            classes = [cx.abstract_syntax for cx in AllStoragePresentationContexts]
        else:
            classes = list(sop_classes)
        for uid in classes:
            self._ae.add_supported_context(uid, syntaxes)
        self._server = None

    @property
    def port(self) -> int:
        return self._server.server_address[1] if self._server is not None else self.requested_port

    def _on_store(self, event) -> int:
        partial: Path | None = None
        try:
            ds = event.dataset
            ds.file_meta = event.file_meta
            uid = str(ds.SOPInstanceUID)
            if not _UID.fullmatch(uid):  # the UID names the spool file: digits and dots only
                raise ValueError("the SOP Instance UID is not a valid UID")
            final = self.spool_dir / f"{uid}.dcm"
            partial = final.with_name(final.name + ".part")
            ds.save_as(partial, enforce_file_format=True)
            os.replace(partial, final)  # atomic: readers never see a half-written file
        except Exception as exc:  # answer the SCU with a failure status instead of dropping the link
            if partial is not None:
                partial.unlink(missing_ok=True)  # nothing half-written stays in the spool
            log.warning("C-STORE from %s failed: %s", event.assoc.requestor.ae_title, _one_line(exc))
            return 0xC210  # cannot understand
        self.received_count += 1
        log.info("received %s from %s", uid, event.assoc.requestor.ae_title)
        self.received.put(final)
        return 0x0000

    def start(self) -> None:
        """Start listening in background threads (returns at once)."""
        if self._server is None:
            self._server = self._ae.start_server(
                (self.bind_address, self.requested_port), block=False,
                evt_handlers=[(evt.EVT_C_STORE, self._on_store)],
            )
            log.info("C-STORE SCP %s listening on %s:%d", self.ae_title, self.bind_address, self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def drain(self) -> list[Path]:
        """Paths received since the last call."""
        paths: list[Path] = []
        while True:
            try:
                paths.append(self.received.get_nowait())
            except queue.Empty:
                return paths


__all__ = ["DEFAULT_SOP_CLASSES", "DEFAULT_TRANSFER_SYNTAXES", "StoreSCP"]
