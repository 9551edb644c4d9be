"""Shared set-up of the review-app tests (not a test module): a report folder made by the real
burn-triage graph on sample_data/, users and API tokens."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

from dicom_helpers import SAMPLE

PASSWORD = "correct horse battery staple"
CLINICIAN = ("asmith", "Smith^Anna")
VIEWER = ("vjones", "Jones^Val")


def tiny_web_settings(**web):
    from burnscope.applications.review.settings import load_web_settings

    return load_web_settings(overrides={"inference": {"model_config": "biomedclip-tiny"}, "web": web})


def triage_reports(settings, components, out: Path) -> Path:
    """Reports of sample_data/ written by the burn-triage graph into ``out`` (the demo's output)."""
    from burnscope.applications.burn_triage.runner import run_triage

    run_triage(settings, SAMPLE, out, components)
    return out


def make_users(folder: Path):
    """A users file with one clinician and one viewer, and a token file (one token per role)."""
    from burnscope.applications.review.auth import TokenStore, UserStore

    users = UserStore(folder / "users.json")
    users.add(CLINICIAN[0], PASSWORD, "clinician", person_name=CLINICIAN[1], organization="Burn unit")
    users.add(VIEWER[0], PASSWORD, "viewer", person_name=VIEWER[1])
    clinician_token, viewer_token = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    token_file = folder / "tokens.txt"
    token_file.write_text(f"# API tokens\n{clinician_token} clinician Doe^John\n{viewer_token}\n")
    return users, TokenStore(token_file), clinician_token, viewer_token


def hidden_csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
