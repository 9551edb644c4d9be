"""Who may store into the C-STORE SCP: peer addresses, TLS, calling and called AE titles.

Checks, in the order a connection meets them:

1. **Peer address** (``allowed_addresses``: IP addresses and CIDR networks). A connection from
   elsewhere is closed at once, before TLS and before a byte of DICOM is read.
2. **TLS** (an ``ssl.SSLContext`` from :func:`burnscope.common.tls.server_context`). The
   handshake runs in the connection's own thread with a time limit, so a client that stalls
   it cannot hold up other modalities; a failed handshake (no or untrusted client
   certificate, old protocol) closes the connection.
3. **AE titles**: pynetdicom rejects the association (A-ASSOCIATE-RJ, rejected-permanent,
   service-user) with reason 3 "calling AE title not recognised" when ``allowed_calling_aets``
   is set and the calling AE is not on it, and with reason 7 "called AE title not recognised"
   when ``require_called_aet`` is set and the modality addressed another AE title.

Every refusal is logged with the calling AE (when known) and the peer address only, and counted
in :class:`Rejections` (``rejected_associations`` in the run summary).
"""

from __future__ import annotations

import collections
import ipaddress
import logging
import ssl
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pynetdicom.transport import ThreadedAssociationServer

from burnscope.common.tls import describe_ssl_error

log = logging.getLogger("burnscope.dicom_loader.scp")

CALLING_AE_NOT_RECOGNISED = "calling AE not recognised"
CALLED_AE_NOT_RECOGNISED = "called AE not recognised"
ADDRESS_NOT_ALLOWED = "peer address not allowed"
TLS_FAILED = "TLS handshake failed"
OTHER = "rejected by the SCP (too many associations or user identity)"


def parse_networks(values: Iterable[str] | None) -> tuple[ipaddress._BaseNetwork, ...] | None:
    """IP addresses and CIDR networks (``10.1.2.3``, ``10.1.0.0/16``, ``::1``); None: any address."""
    if values is None:
        return None
    nets = []
    for value in values:
        try:
            nets.append(ipaddress.ip_network(str(value).strip(), strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or CIDR network: {value!r}") from None
    return tuple(nets)


@dataclass
class AccessPolicy:
    """What the SCP lets in (see the module docstring). Empty = no restriction of that kind."""

    allowed_calling_aets: tuple[str, ...] | None = None
    require_called_aet: bool = False
    allowed_addresses: tuple[ipaddress._BaseNetwork, ...] | None = None

    @classmethod
    def from_settings(
        cls,
        allowed_calling_aets: Iterable[str] | None = None,
        require_called_aet: bool = False,
        allowed_addresses: Iterable[str] | None = None,
    ) -> "AccessPolicy":
        aets = None if allowed_calling_aets is None else tuple(a.strip() for a in allowed_calling_aets)
        if aets == ():
            raise ValueError("allowed_calling_aets is empty: nobody could store (null allows every AE)")
        nets = parse_networks(allowed_addresses)
        if nets == ():
            raise ValueError("allowed_addresses is empty: nobody could connect (null allows every address)")
        return cls(aets, bool(require_called_aet), nets)

    def address_allowed(self, host: str) -> bool:
        if self.allowed_addresses is None:
            return True
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in net for net in self.allowed_addresses)

    def ae_reason(self, calling_aet: str, called_aet: str, own_aet: str) -> str:
        """Why an association with these AE titles was rejected (pynetdicom's order: called AE last wins)."""
        if self.require_called_aet and called_aet.strip() != own_aet.strip():
            return CALLED_AE_NOT_RECOGNISED
        if self.allowed_calling_aets is not None and calling_aet.strip() not in self.allowed_calling_aets:
            return CALLING_AE_NOT_RECOGNISED
        return OTHER

    def apply(self, ae: Any) -> None:
        """Configure pynetdicom's own AE-title checks on ``ae``."""
        if self.allowed_calling_aets is not None:
            ae.require_calling_aet = list(self.allowed_calling_aets)
        ae.require_called_aet = self.require_called_aet


@dataclass
class Rejections:
    """Counts refused connections and associations (thread-safe); ``by_reason`` per reason."""

    total: int = 0
    by_reason: collections.Counter = field(default_factory=collections.Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, reason: str, address: str, calling_aet: str | None = None, detail: str = "") -> None:
        with self._lock:
            self.total += 1
            self.by_reason[reason] += 1
        who = f"calling AE {calling_aet!r} from {address}" if calling_aet is not None else f"connection from {address}"
        log.warning("rejected %s: %s", who, detail or reason)


def _peer(address: Any) -> str:
    return str(address[0]) if isinstance(address, tuple) and address else str(address)


class GuardedAssociationServer(ThreadedAssociationServer):
    """pynetdicom's threaded server with the address check and a per-connection TLS handshake.

    Made by ``AE.make_server(..., server_class=GuardedAssociationServer, policy=...,
    rejections=..., handshake_timeout_s=...)``.
    """

    def __init__(
        self,
        *args: Any,
        policy: AccessPolicy | None = None,
        rejections: Rejections | None = None,
        handshake_timeout_s: float = 30.0,
        **kwargs: Any,
    ) -> None:
        self.policy = policy or AccessPolicy()
        self.rejections = rejections or Rejections()
        self.handshake_timeout_s = handshake_timeout_s
        super().__init__(*args, **kwargs)

    def get_request(self):
        # Accept only; the TLS handshake happens in the connection's thread (process_request_thread).
        return self.socket.accept()

    def verify_request(self, request, client_address) -> bool:
        if self.policy.address_allowed(_peer(client_address)):
            return True
        self.rejections.record(ADDRESS_NOT_ALLOWED, _peer(client_address))
        return False  # socketserver closes the connection

    def process_request_thread(self, request, client_address) -> None:
        if self.ssl_context is not None:
            try:
                request.settimeout(self.handshake_timeout_s)
                request = self.ssl_context.wrap_socket(request, server_side=True)
                request.settimeout(None)
            except (ssl.SSLError, OSError) as exc:
                self.rejections.record(TLS_FAILED, _peer(client_address), detail=describe_ssl_error(exc))
                self.shutdown_request(request)
                return
        super().process_request_thread(request, client_address)


__all__ = [
    "ADDRESS_NOT_ALLOWED", "AccessPolicy", "CALLED_AE_NOT_RECOGNISED", "CALLING_AE_NOT_RECOGNISED",
    "GuardedAssociationServer", "Rejections", "TLS_FAILED", "parse_networks",
]
