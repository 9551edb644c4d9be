"""Settings of the review app: burn-triage's config, this folder's config.yaml, the user's YAML."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from burnscope.applications.burn_triage.settings import SettingsError, _merge, load_settings

REVIEW_CONFIG = Path(__file__).with_name("config.yaml")


def default_users_file() -> Path:
    """``$BURNSCOPE_WEB_USERS``, else ``$XDG_CONFIG_HOME/burnscope/web-users.json`` (``~/.config``)."""
    if os.environ.get("BURNSCOPE_WEB_USERS"):
        return Path(os.environ["BURNSCOPE_WEB_USERS"])
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "burnscope" / "web-users.json"


def load_web_settings(config: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """burn-triage defaults ← ``applications/review/config.yaml`` ← ``config`` ← ``overrides``."""
    user: dict[str, Any] = {}
    if config is not None:
        path = Path(config)
        if not path.is_file():
            raise SettingsError(f"config file not found: {path}")
        user = yaml.safe_load(path.read_text()) or {}
        if not isinstance(user, dict):
            raise SettingsError(f"{path}: expected a mapping of settings")
    settings = load_settings(REVIEW_CONFIG, overrides=_merge(user, overrides or {}))
    web = settings["web"]
    for key in ("max_upload_mb", "max_request_kb", "session_idle_minutes", "session_max_hours", "image_max_side"):
        value = web.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            raise SettingsError(f"web.{key} must be a positive number, got {value!r}")
    if not isinstance(web.get("port"), int) or not 0 < web["port"] < 65536:
        raise SettingsError(f"web.port must be a TCP port number, got {web.get('port')!r}")
    return settings


__all__ = ["REVIEW_CONFIG", "SettingsError", "default_users_file", "load_web_settings"]
