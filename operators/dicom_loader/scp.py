"""A DICOM C-STORE SCP (pynetdicom) without Holoscan: receives images into a spool folder.

Each received instance is written to ``spool_dir`` under a temporary name, flushed to disk
(``fsync`` of the file, then of the folder after the rename into place), handed to ``on_stored``
(the intake journal records it there) and only then acknowledged with Success; its path is then
put on :attr:`StoreSCP.received`. A reader never sees half a file, and an acknowledged instance
survives a crash. Log lines name the SOP Instance UID and the calling AE title, never the patient. Spooled files are readable by their owner only (0600, in a 0700
folder). Who may connect (addresses, TLS, AE titles) is :mod:`.scp_access`.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping
from io import BytesIO
from pathlib import Path
from typing import Any

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

from burnscope.common.private_files import private_dirs
from burnscope.operators.dicom_loader.scp_access import AccessPolicy, GuardedAssociationServer, Rejections
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
        allowed_calling_aets: calling AE titles that may store (None: any).
        require_called_aet: reject associations addressed to another AE title.
        allowed_addresses: peer IP addresses / CIDR networks that may connect (None: any).
        tls: DICOM TLS: an ``ssl.SSLContext`` or ``{cert, key, ca, require_client_cert}``
            (:func:`burnscope.common.tls.server_context`); None: no TLS.
        on_stored: ``callback(path, sop_instance_uid)`` after an instance is on disk and before
            Success is returned; if it raises, the SCU gets "out of resources" (0xA700) and may
            send again.

    ``rejections`` counts refused connections and associations (``rejected_associations``).
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
        allowed_calling_aets: Iterable[str] | None = None,
        require_called_aet: bool = False,
        allowed_addresses: Iterable[str] | None = None,
        tls: Mapping[str, Any] | Any = None,
        on_stored: Callable[[Path, str], None] | None = None,
    ) -> None:
        from burnscope.common.tls import server_context

        self.ae_title = ae_title
        self.on_stored = on_stored
        self.bind_address = bind_address
        self.requested_port = int(port)
        self.spool_dir = Path(spool_dir).absolute() if spool_dir else Path(tempfile.mkdtemp(prefix="burnscope-scp-"))
        private_dirs(self.spool_dir)
        self.policy = AccessPolicy.from_settings(allowed_calling_aets, require_called_aet, allowed_addresses)
        self.ssl_context = server_context(**tls) if isinstance(tls, Mapping) else tls
        self.rejections = Rejections()
        self.received: queue.Queue[Path] = queue.Queue()
        self.received_count = 0
        self._ae = AE(ae_title=ae_title)
        self._ae.maximum_pdu_size = int(max_pdu)
        self.policy.apply(self._ae)
        syntaxes = list(transfer_syntaxes)
        if sop_classes == "all":
            classes = [cx.abstract_syntax for cx in AllStoragePresentationContexts]
        else:
            classes = list(sop_classes)
        for uid in classes:
            self._ae.add_supported_context(uid, syntaxes)
        self._server = None

    @property
    def rejected_associations(self) -> int:
        return self.rejections.total

    @property
    def port(self) -> int:
        return self._server.server_address[1] if self._server is not None else self.requested_port

    def _on_store(self, event) -> int:
        from burnscope.operators.sinks.folder import write_atomic

        try:
            ds = event.dataset
            ds.file_meta = event.file_meta
            uid = str(ds.SOPInstanceUID)
            if not _UID.fullmatch(uid):  # the UID names the spool file: digits and dots only
                raise ValueError("the SOP Instance UID is not a valid UID")
            final = self.spool_dir / f"{uid}.dcm"
            buffer = BytesIO()
            ds.save_as(buffer, enforce_file_format=True)
        except Exception as exc:  # answer the SCU with a failure status; nothing was written yet
            log.warning("C-STORE from %s failed: %s", event.assoc.requestor.ae_title, _one_line(exc))
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

    def _on_rejected(self, event) -> None:
        requestor = event.assoc.requestor
        reason = self.policy.ae_reason(requestor.ae_title, requestor.primitive.called_ae_title, self.ae_title)
        self.rejections.record(reason, str(requestor.address), calling_aet=requestor.ae_title)

    def start(self) -> None:
        """Start listening in background threads (returns at once)."""
        if self._server is None:
            server = self._ae.make_server(
                (self.bind_address, self.requested_port), ssl_context=self.ssl_context,
                evt_handlers=[(evt.EVT_C_STORE, self._on_store), (evt.EVT_REJECTED, self._on_rejected)],
                server_class=GuardedAssociationServer, policy=self.policy, rejections=self.rejections,
            )
            threading.Thread(target=server.serve_forever, name=f"scp-{self.ae_title}", daemon=True).start()
            self._ae._servers.append(server)  # as AE.start_server does: AE.shutdown() stops it too
            self._server = server
            log.info("C-STORE SCP %s listening on %s:%d%s", self.ae_title, self.bind_address, self.port,
                     " (DICOM TLS)" if self.ssl_context is not None else "")

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
