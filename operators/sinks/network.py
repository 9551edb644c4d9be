"""Network sinks (cores): DICOM C-STORE SCU, DICOMweb STOW-RS, FHIR REST, behind the outbox.

:class:`DeliveryService` takes report bundles, records each delivery in the
:class:`~burnscope.operators.sinks.outbox.Outbox` first, then sends what is due through a
transport per destination. A transport raises :class:`TransientError` (retried with backoff)
or :class:`PermanentError` (marked failed with its status code). Every step is written to an
audit log (JSON lines) that names SOP Instance UIDs / Bundle ids and destinations only, never
patient data.

Destination settings (a list of dicts, e.g. from the application's YAML)::

    - {name: pacs, kind: cstore, host: 10.0.0.5, port: 104, called_aet: PACS, calling_aet: BURNSCOPE}
    - {name: dicomweb, kind: stowrs, url: http://pacs/dicom-web}
    - {name: emr, kind: fhir, url: https://emr/fhir}

TLS (``tls: {ca, cert, key}``) and authentication (``auth: {kind: basic|bearer|oauth2, ...}``)
of a destination are :mod:`.security`; settings name secrets (``password_file``,
``token_env``, ...) and never hold them, so the outbox stores only the reference. The audit
log is created readable by its owner only.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import threading
import time
from collections.abc import Iterable
from io import BytesIO
from pathlib import Path
from typing import Any, Protocol

from burnscope.common.credentials import redact
from burnscope.common.private_files import open_private, private_dirs
from burnscope.operators.report.core import ReportBundle
from burnscope.operators.sinks.outbox import DELIVERED, FAILED, Outbox
from burnscope.operators.sinks.security import (
    check_no_literal_secrets, cstore_tls_args, describe_request_failure, http_session,
)

log = logging.getLogger(__name__)

#: Which delivery kinds each destination kind takes.
ACCEPTS = {"cstore": "dicom", "stowrs": "dicom", "fhir": "fhir"}


class TransientError(Exception):
    """The destination could not take the object now (unreachable, slow, busy, 5xx, 429): retry
    later; ``retry_after_s`` when the server said how long to wait (``Retry-After``)."""

    def __init__(self, message: str, status: int | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s


class PermanentError(Exception):
    """The destination refused the object (SOP class not supported, 4xx): do not retry."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Transport(Protocol):
    kind: str

    def send(self, payload: bytes) -> int | None: ...

    def close(self) -> None: ...


class AuditLog:
    """Append-only JSON-lines audit trail: time, event, key, destination, outcome, attempt, status, reason."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None
        self._lock = threading.Lock()
        if self.path:
            private_dirs(self.path.parent)

    def write(
        self,
        event: str,
        *,
        key: str = "",
        destination: str = "",
        outcome: str = "",
        attempt: int | None = None,
        status: int | None = None,
        reason: str = "",
    ) -> None:
        record = {
            "time": _dt.datetime.now(_dt.timezone.utc)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "event": event,
            "key": key,
            "destination": destination,
            "outcome": outcome,
            "attempt": attempt,
            "status": status,
            "reason": redact(reason)[:500],
        }
        if not self.path:
            return
        line = json.dumps(record) + "\n"
        with self._lock, open_private(self.path, "a") as handle:
            handle.write(line)


# -- transports ----------------------------------------------------------------------------------


class CStoreTransport:
    """DICOM C-STORE SCU (pynetdicom). One association is kept open and reused between sends."""

    kind = "cstore"

    def __init__(
        self,
        host: str,
        port: int,
        called_aet: str = "ANY-SCP",
        calling_aet: str = "BURNSCOPE",
        timeout_s: float = 30.0,
        tls: dict[str, Any] | None = None,
        **_: Any,
    ) -> None:
        from pynetdicom import AE
        from pynetdicom.sop_class import (
            ComprehensiveSRStorage,
            EncapsulatedPDFStorage,
            SecondaryCaptureImageStorage,
            Verification,
        )
        from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

        self.host, self.port, self.called_aet = host, int(port), called_aet
        self.ae = AE(ae_title=calling_aet)
        self.ae.acse_timeout = self.ae.dimse_timeout = self.ae.network_timeout = timeout_s
        self.ae.connection_timeout = min(timeout_s, 10.0)
        self.ae.add_requested_context(Verification)
        for sop_class in (ComprehensiveSRStorage, EncapsulatedPDFStorage, SecondaryCaptureImageStorage):
            self.ae.add_requested_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        self._assoc = None
        self.associations_opened = 0
        #: DICOM TLS (context, server name) or None: see :func:`.security.cstore_tls_args`.
        self.tls_args = cstore_tls_args(tls, host)

    def _association(self):
        if self._assoc is not None and self._assoc.is_established:
            return self._assoc
        assoc = self.ae.associate(self.host, self.port, ae_title=self.called_aet, tls_args=self.tls_args)
        if not assoc.is_established:
            why = "rejected" if assoc.is_rejected else "aborted" if assoc.is_aborted else "no connection"
            tls_error = getattr(self.tls_args[0], "last_handshake_error", None) if self.tls_args else None
            if tls_error and not assoc.is_rejected:
                why = f"TLS: {tls_error}"
                self.tls_args[0].last_handshake_error = None
            raise TransientError(f"association with {self.called_aet}@{self.host}:{self.port} failed ({why})")
        self._assoc = assoc
        self.associations_opened += 1
        return assoc

    def echo(self) -> int:
        """C-ECHO (verification); returns the status, raises TransientError when unreachable."""
        status = self._association().send_c_echo()
        if not status or "Status" not in status:
            self.close()
            raise TransientError("C-ECHO got no response")
        return int(status.Status)

    def send(self, payload: bytes) -> int:
        import pydicom
        from pynetdicom.status import code_to_category

        ds = pydicom.dcmread(BytesIO(payload))
        assoc = self._association()
        try:
            status = assoc.send_c_store(ds)
        except ValueError as exc:  # no accepted presentation context: the PACS refuses this SOP class
            raise PermanentError(f"SOP class {ds.SOPClassUID} not accepted: {exc}", status=0x0122) from exc
        except (RuntimeError, OSError) as exc:
            self.close()
            raise TransientError(f"C-STORE failed: {exc}") from exc
        if not status or "Status" not in status:
            self.close()  # timeout or abort: the association is unusable
            raise TransientError("C-STORE got no response")
        code = int(status.Status)
        category = code_to_category(code)
        if category in ("Success", "Warning"):
            return code
        if 0xA700 <= code <= 0xA7FF:  # out of resources: try again later
            raise TransientError(f"C-STORE status 0x{code:04X} (out of resources)", status=code)
        raise PermanentError(f"C-STORE status 0x{code:04X} ({category})", status=code)

    def close(self) -> None:
        if self._assoc is not None:
            try:
                if self._assoc.is_established:
                    self._assoc.release()
            except Exception:  # release on a dead socket: nothing left to do
                pass
            self._assoc = None


def _issue_codes(response: Any) -> str:
    """The ``issue[].code`` values of a FHIR OperationOutcome reply, and nothing else.

    Servers echo the request in their diagnostics (a Patient search URL with the patient's
    identifier, say), and these messages reach logs, the audit trail and the outbox: keep only
    the coded part.
    """
    try:
        outcome = response.json()
        codes = [str(issue.get("code", "")) for issue in outcome.get("issue", []) if isinstance(issue, dict)]
    except Exception:  # not JSON, or not an OperationOutcome
        return ""
    codes = [c for c in codes if c.replace("-", "").isalnum()]
    return f" (issue: {', '.join(codes)})" if codes else ""


def _http_error(exc: Exception, what: str) -> Exception:
    import requests

    from burnscope.operators.sinks.retry_after import retry_after_of

    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        code = exc.response.status_code
        if code in (401, 403):  # credentials may be fixed or rotated on either side: retried, then failed
            return TransientError(f"{what}: HTTP {code} (authentication failed: check the destination's credentials)",
                                  status=code)
        if code in (408, 425, 429) or code >= 500:
            wait = retry_after_of(exc.response)
            after = f", retry after {wait:.0f} s" if wait is not None else ""
            return TransientError(f"{what}: HTTP {code}{after}", status=code, retry_after_s=wait)
        return PermanentError(f"{what}: HTTP {code}{_issue_codes(exc.response)}", status=code)
    if isinstance(exc, requests.Timeout):
        return TransientError(f"{what}: no answer within the timeout ({type(exc).__name__})")
    return TransientError(f"{what}: {describe_request_failure(exc)}")


class StowRsTransport:
    """DICOMweb STOW-RS via dicomweb-client."""

    kind = "stowrs"

    def __init__(
        self, url: str, timeout_s: float = 30.0, tls: dict[str, Any] | None = None,
        auth: dict[str, Any] | None = None, **_: Any,
    ) -> None:
        from dicomweb_client.api import DICOMwebClient

        self.url = url
        self.session = http_session(url, tls, auth, timeout_s)
        self.client = DICOMwebClient(url=url, session=self.session, timeout=timeout_s)
        # Retries belong to the outbox (durable, with backoff); the client's own would block.
        self.client.set_http_retry_params(retry=False)
        self.timeout_s = timeout_s

    def send(self, payload: bytes) -> int:
        import pydicom
        import requests

        ds = pydicom.dcmread(BytesIO(payload))
        try:
            response = self.client.store_instances(datasets=[ds])
        except (requests.RequestException, OSError) as exc:
            raise _http_error(exc, "STOW-RS") from exc
        failed = getattr(response, "FailedSOPSequence", None) if response is not None else None
        if failed:
            reason = int(getattr(failed[0], "FailureReason", 0) or 0)
            if 0xA700 <= reason <= 0xA7FF:
                raise TransientError(f"STOW-RS failure reason 0x{reason:04X}", status=reason)
            raise PermanentError(f"STOW-RS failure reason 0x{reason:04X}", status=reason)
        return 200

    def close(self) -> None:
        self.session.close()


class FhirTransport:
    """FHIR REST: POST the transaction Bundle to the server's base URL."""

    kind = "fhir"

    def __init__(
        self, url: str, timeout_s: float = 30.0, headers: dict[str, str] | None = None,
        tls: dict[str, Any] | None = None, auth: dict[str, Any] | None = None, **_: Any
    ) -> None:
        self.url = url.rstrip("/")
        self.session = http_session(self.url, tls, auth, timeout_s)
        self.session.headers.update(
            {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json", **(headers or {})}
        )
        self.timeout_s = timeout_s

    def send(self, payload: bytes) -> int:
        import requests

        try:
            response = self.session.post(self.url, data=payload, timeout=self.timeout_s)
            response.raise_for_status()
        except (requests.RequestException, OSError) as exc:
            raise _http_error(exc, "FHIR POST") from exc
        return response.status_code

    def close(self) -> None:
        self.session.close()


TRANSPORTS = {"cstore": CStoreTransport, "stowrs": StowRsTransport, "fhir": FhirTransport}


def make_transport(kind: str, settings: dict[str, Any]) -> Transport:
    try:
        cls = TRANSPORTS[kind]
    except KeyError:
        raise ValueError(f"unknown destination kind {kind!r}; known: {', '.join(TRANSPORTS)}") from None
    return cls(**settings)


# -- the service -----------------------------------------------------------------------------------


class DeliveryService:
    """Outbox-backed delivery of report bundles to a set of destinations.

    ``destinations``: list of dicts with ``name``, ``kind`` (cstore|stowrs|fhir) and the
    transport's settings; stored in the outbox so that ``burnscope outbox retry`` can deliver
    later with the same settings. Counters: ``enqueued``, ``delivered``, ``failed``,
    ``attempts``.
    """

    def __init__(
        self,
        outbox: Outbox,
        destinations: Iterable[dict[str, Any]] | None = None,
        *,
        audit: AuditLog | None = None,
        transports: dict[str, Transport] | None = None,
    ) -> None:
        self.outbox = outbox
        self.audit = audit or AuditLog(None)
        self.kinds: dict[str, str] = {}
        self.transports: dict[str, Transport] = dict(transports or {})
        for dest in destinations or []:
            dest = dict(dest)
            name, kind = dest.pop("name"), dest.pop("kind")
            if kind not in TRANSPORTS:
                raise ValueError(f"unknown destination kind {kind!r}; known: {', '.join(TRANSPORTS)}")
            check_no_literal_secrets(dest, f"destination {name}: ")
            outbox.set_destination(name, kind, dest)
        for name, (kind, settings) in outbox.destinations().items():
            self.kinds[name] = kind
            if name not in self.transports:
                self.transports[name] = make_transport(kind, settings)
        self.enqueued = self.delivered = self.failed = self.attempts = 0
        recovered = outbox.recover()
        if recovered:
            log.warning(
                "outbox: %d delivery(ies) interrupted by a previous run will be sent again", recovered
            )
            self.audit.write("recovered", outcome="pending", reason=f"{recovered} interrupted deliveries")

    @classmethod
    def open(
        cls,
        outbox_path: str | Path,
        destinations: Iterable[dict[str, Any]] | None = None,
        *,
        audit_path: str | Path | None = None,
        **outbox_kwargs: Any,
    ) -> "DeliveryService":
        outbox = Outbox(outbox_path, **outbox_kwargs)
        if audit_path is None:
            audit_path = Path(outbox_path).with_name("audit.jsonl")
        return cls(outbox, destinations, audit=AuditLog(audit_path))

    def echo(self) -> dict[str, str]:
        """C-ECHO every C-STORE destination; returns name → "ok" or the reason (never raises)."""
        results = {}
        for name, transport in self.transports.items():
            if not hasattr(transport, "echo"):
                continue
            try:
                code = transport.echo()
                results[name] = "ok" if code == 0 else f"status 0x{code:04X}"
            except Exception as exc:  # unreachable at start: reports wait in the outbox
                results[name] = str(exc)
            self.audit.write(
                "echo",
                destination=name,
                outcome="ok" if results[name] == "ok" else "error",
                reason="" if results[name] == "ok" else results[name],
            )
            (log.info if results[name] == "ok" else log.warning)("C-ECHO %s: %s", name, results[name])
        return results

    def submit(self, bundles: Iterable[ReportBundle]) -> int:
        """Record the deliveries of these bundles (before any attempt); returns how many are new."""
        new = 0
        for bundle in bundles:
            for item in bundle.deliveries:
                payload = bundle.artefacts.get(item["suffix"])
                if payload is None:
                    continue
                for name, kind in self.kinds.items():
                    if ACCEPTS[kind] != item["kind"]:
                        continue
                    if self.outbox.enqueue(item["key"], name, item["kind"], payload, label=item["key"]):
                        new += 1
                        self.audit.write("enqueued", key=item["key"], destination=name, outcome="pending")
        self.enqueued += new
        return new

    def pump(self, deadline: float | None = None, destination: str | None = None) -> int:
        """Send what is due now, one destination after another (or to ``destination`` only);
        returns how many were delivered.

        A transient failure stops that destination for this round (it is down; the rest waits).
        """
        delivered = 0
        for name, transport in self.transports.items():
            if destination is not None and name != destination:
                continue
            while deadline is None or time.monotonic() < deadline:
                claimed = self.outbox.claim_due(destination=name, limit=1)
                if not claimed:
                    break
                d = claimed[0]
                self.attempts += 1
                try:
                    status = transport.send(d.payload)
                except TransientError as exc:
                    state, delay = self.outbox.mark_retry(d.id, str(exc), exc.status, min_delay_s=exc.retry_after_s)
                    if state == FAILED:
                        self.failed += 1
                    self.audit.write(
                        "attempt",
                        key=d.key,
                        destination=name,
                        outcome="failed" if state == FAILED else "retry",
                        attempt=d.attempts,
                        status=exc.status,
                        reason=str(exc),
                    )
                    log.warning("delivery of %s to %s: %s (next try in %.1f s)", d.key, name, exc, delay)
                    break
                except PermanentError as exc:
                    self.outbox.mark_failed(d.id, str(exc), exc.status)
                    self.failed += 1
                    self.audit.write(
                        "attempt",
                        key=d.key,
                        destination=name,
                        outcome="failed",
                        attempt=d.attempts,
                        status=exc.status,
                        reason=str(exc),
                    )
                    log.error("delivery of %s to %s rejected: %s", d.key, name, exc)
                    continue
                except Exception as exc:  # a bug or an unexpected library error: keep the item, retry later
                    self.outbox.mark_retry(d.id, f"{type(exc).__name__}: {exc}")
                    self.audit.write(
                        "attempt",
                        key=d.key,
                        destination=name,
                        outcome="retry",
                        attempt=d.attempts,
                        reason=f"{type(exc).__name__}: {exc}",
                    )
                    log.exception("delivery of %s to %s failed unexpectedly", d.key, name)
                    break
                self.outbox.mark_delivered(d.id, status)
                delivered += 1
                self.audit.write(
                    "attempt",
                    key=d.key,
                    destination=name,
                    outcome=DELIVERED,
                    attempt=d.attempts,
                    status=status,
                )
        self.delivered += delivered
        return delivered

    def drain(self, timeout_s: float = 30.0, poll_s: float = 0.2, destination: str | None = None) -> bool:
        """Pump until nothing is pending (for ``destination``, or for all) or ``timeout_s`` passes;
        True when all were settled."""
        end = time.monotonic() + timeout_s
        while True:
            self.pump(deadline=end, destination=destination)
            if self.outbox.pending_count(destination) == 0:
                return True
            wait = self.outbox.next_due_in()
            now = time.monotonic()
            if now >= end:
                return False
            time.sleep(min(max(wait if wait is not None else poll_s, 0.01), poll_s * 5, end - now))

    def close(self) -> None:
        for transport in self.transports.values():
            try:
                transport.close()
            except Exception:
                pass
