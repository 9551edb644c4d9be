"""Start-up checks of burn-triage's security settings: every TLS context and secret is built
once before anything else starts (before the model loads, before a port opens or a folder is
made), so a missing certificate, a malformed key, an unreadable secret file or an unset
environment variable stops the run with one line naming the setting.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from burnscope.common.tls import TlsError, server_context
from burnscope.operators.sinks.security import SecuritySettingError, prepare

from .schema import SettingsError

log = logging.getLogger(__name__)


def check_security(settings: dict[str, Any]) -> None:
    """Raise :class:`SettingsError` (one line per problem, each naming its key) or return."""
    problems = []
    source = settings["source"]
    if source["kind"] == "scp":
        scp = source["scp"]
        if scp.get("tls"):
            try:
                server_context(**scp["tls"])
            except TlsError as exc:
                problems.append(f"source.scp.tls.{exc.key}: {exc.problem}")
        # the schema refuses an open SCP off loopback unless allow_any_caller says so: say it once more
        open_to_network = not ipaddress.ip_address(scp["bind_address"]).is_loopback
        if open_to_network and scp.get("allow_any_caller"):
            log.warning(
                "the C-STORE SCP listens on %s and accepts any calling AE from any address (allow_any_caller); "
                "source.scp.allowed_calling_aets, allowed_addresses or tls would fence it (docs/security.md)",
                scp["bind_address"],
            )
    for index, destination in enumerate(settings["delivery"]["destinations"]):
        try:
            prepare(destination)
        except SecuritySettingError as exc:
            problems.append(f"delivery.destinations[{index}].{exc.key}: {exc.problem}")
    if problems:
        raise SettingsError("\n".join(problems))


__all__ = ["check_security"]
