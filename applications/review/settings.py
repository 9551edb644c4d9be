"""Settings of the review app: burn-triage's config, this folder's config.yaml, the user's YAML."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

from pydantic import Field, model_validator

from burnscope.applications.burn_triage.schema import TriageSettings, _Section, validate_settings
from burnscope.applications.burn_triage.settings import DEFAULT_CONFIG, SettingsError, _merge, read_yaml

REVIEW_CONFIG = Path(__file__).with_name("config.yaml")


def default_users_file() -> Path:
    """``$BURNSCOPE_WEB_USERS``, else ``$XDG_CONFIG_HOME/burnscope/web-users.json`` (``~/.config``)."""
    if os.environ.get("BURNSCOPE_WEB_USERS"):
        return Path(os.environ["BURNSCOPE_WEB_USERS"])
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "burnscope" / "web-users.json"


class TlsSettings(_Section):
    certfile: Optional[str] = Field(None, description="TLS certificate (PEM); with keyfile: HTTPS and Secure cookies.")
    keyfile: Optional[str] = Field(None, description="TLS private key (PEM).")

    @model_validator(mode="after")
    def _together(self) -> "TlsSettings":
        if bool(self.certfile) != bool(self.keyfile):
            raise ValueError("certfile and keyfile go together")
        return self


class WebSettings(_Section):
    host: str = Field("127.0.0.1", description="Address to bind; loopback unless told otherwise.")
    port: int = Field(8080, ge=1, le=65535, description="TCP port.")
    users_file: Optional[str] = Field(None, description="Users file; null: $XDG_CONFIG_HOME/burnscope/web-users.json.")
    api_token_file: Optional[str] = Field(None, description="API tokens, one a line: TOKEN [viewer|clinician [Family^Given]].")
    max_upload_mb: float = Field(64, gt=0, description="POST /api/v1/analyze body limit; larger → 413.")
    max_request_kb: float = Field(512, gt=0, description="Any other request body; larger → 413.")
    session_idle_minutes: float = Field(30, gt=0, description="A session ends after this long without a request.")
    session_max_hours: float = Field(12, gt=0, description="A session ends this long after login.")
    image_max_side: int = Field(1024, gt=0, description="Photos are shown (and burned into captures) at most this large.")
    organization: str = Field("", description="Verifying Organization of signed reports when a user has none.")
    tls: TlsSettings = Field(default_factory=TlsSettings)
    forwarded_allow_ips: Optional[str] = Field(
        None, description="Behind a TLS-terminating proxy: its address (X-Forwarded-Proto then counts)."
    )


class ReviewAppSettings(TriageSettings):
    """burn-triage's settings (the same cores run behind the API) plus the ``web`` section."""

    web: WebSettings = Field(default_factory=WebSettings)


def load_web_settings(config: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """burn-triage defaults ← ``applications/review/config.yaml`` ← ``config`` ← ``overrides``, validated
    against :class:`ReviewAppSettings` (unknown keys and bad values are SettingsErrors naming them)."""
    settings = _merge(read_yaml(DEFAULT_CONFIG), read_yaml(REVIEW_CONFIG))
    if config is not None:
        settings = _merge(settings, read_yaml(config))
    return validate_settings(_merge(settings, overrides or {}), ReviewAppSettings)


__all__ = ["REVIEW_CONFIG", "ReviewAppSettings", "SettingsError", "WebSettings", "default_users_file", "load_web_settings"]
