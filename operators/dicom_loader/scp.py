"""A DICOM C-STORE SCP (pynetdicom) without Holoscan: receives images into a spool folder.

Each received instance is written to ``spool_dir`` under a temporary name, flushed to disk
(``fsync`` of the file, then of the folder after the rename into place), handed to ``on_stored``
(the intake journal records it there) and only then acknowledged with Success; its path is then
put on :attr:`StoreSCP.received`. A reader never sees half a file, and an acknowledged instance
survives a crash. Log lines name the SOP Instance UID and the calling AE title, never the patient.
"""

from __future__ import annotations

import logging
import os
import queue
import tempfile
from collections.abc import Callable, Iterable
from io import BytesIO
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
        on_stored: ``callback(path, sop_instance_uid)`` after an instance is on disk and before
            Success is returned; if it raises, the SCU gets "out of resources" (0xA700) and may
            send again.
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
        on_stored: Callable[[Path, str], None] | None = None,
    ) -> None:
        self.ae_title = ae_title
        self.on_stored = on_stored
        self.bind_address = bind_address
        self.requested_port = int(port)
        self.spool_dir = Path(spool_dir).absolute() if spool_dir else Path(tempfile.mkdtemp(prefix="burnscope-scp-"))
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
        from burnscope.operators.sinks.folder import write_atomic

        try:
            ds = event.dataset
            ds.file_meta = event.file_meta
            uid = str(ds.SOPInstanceUID)
            final = self.spool_dir / f"{uid}.dcm"
            buffer = BytesIO()
            ds.save_as(buffer, enforce_file_format=True)
        except Exception as exc:  # answer the SCU with a failure status instead of dropping the link
            log.warning("C-STORE from %s failed: %s", event.assoc.requestor.ae_title, exc)
            return 0xC210  # cannot understand
        try:
            # temporary name, fsync, rename, fsync of the folder: on disk before it is acknowledged
            write_atomic(final, buffer.getvalue(), overwrite=True, fsync=True)
            if self.on_stored is not None:
                self.on_stored(final, uid)
        except Exception as exc:  # disk full, journal unusable: the SCU keeps the image and retries
            log.error("C-STORE %s from %s not stored: %s", uid, event.assoc.requestor.ae_title, exc)
            return 0xA700  # out of resources
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
