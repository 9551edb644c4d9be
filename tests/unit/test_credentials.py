"""Secrets: read from a file or an environment variable, blanked out of text and log records."""

from __future__ import annotations

import logging

import pytest

from burnscope.common import credentials
from burnscope.common.credentials import SecretError, install_log_redaction, read_secret, redact


def test_a_secret_comes_from_a_file_or_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "pw"
    path.write_text("s3cret-from-file\n")
    path.chmod(0o600)
    assert read_secret(file=path) == "s3cret-from-file"
    monkeypatch.setenv("BURNSCOPE_TEST_TOKEN", "  tok-from-env  ")
    assert read_secret(env="BURNSCOPE_TEST_TOKEN") == "tok-from-env"
    with pytest.raises(SecretError, match="exactly one"):
        read_secret(file=path, env="BURNSCOPE_TEST_TOKEN")
    with pytest.raises(SecretError, match="exactly one"):
        read_secret()


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, "file not found"),
        (lambda p: p.mkdir(), "not a file"),
        (lambda p: p.write_text("  \n"), "is empty"),
        (lambda p: p.write_bytes(b"\xff\xfe\x00pw"), "not UTF-8 text"),
        (lambda p: p.write_text("one\ntwo\n"), "more than one line"),
    ],
)
def test_unusable_secret_files_name_the_file_and_never_the_content(tmp_path, setup, message):
    path = tmp_path / "secret"
    setup(path)
    with pytest.raises(SecretError) as excinfo:
        read_secret(file=path)
    assert message in str(excinfo.value) and str(path) in str(excinfo.value)
    assert "two" not in str(excinfo.value)


def test_unset_or_empty_variables_name_the_variable(monkeypatch):
    monkeypatch.delenv("BURNSCOPE_TEST_UNSET", raising=False)
    with pytest.raises(SecretError, match="environment variable BURNSCOPE_TEST_UNSET is not set"):
        read_secret(env="BURNSCOPE_TEST_UNSET")
    monkeypatch.setenv("BURNSCOPE_TEST_UNSET", "")
    with pytest.raises(SecretError, match="is empty"):
        read_secret(env="BURNSCOPE_TEST_UNSET")


def test_a_group_readable_secret_file_is_warned_about(tmp_path, caplog):
    path = tmp_path / "pw"
    path.write_text("shared-secret-1")
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        read_secret(file=path)
    assert "can be read by other users (mode 644)" in caplog.text
    assert "shared-secret-1" not in caplog.text


def test_remembered_secrets_are_blanked_from_text_and_every_log_record(tmp_path, caplog):
    path = tmp_path / "pw"
    path.write_text("hunter2-but-longer")
    path.chmod(0o600)
    secret = read_secret(file=path)
    credentials.remember_basic("alice", secret)
    assert redact(f"login failed for {secret}!") == "login failed for ***!"
    install_log_redaction()
    install_log_redaction()  # idempotent
    logger = logging.getLogger("burnscope.test.redaction")
    with caplog.at_level(logging.INFO, logger="burnscope.test.redaction"):
        logger.info("password=%s", secret)
        logger.warning("header Basic %s", "YWxpY2U6aHVudGVyMi1idXQtbG9uZ2Vy")
        try:
            raise RuntimeError(f"server said {secret}")
        except RuntimeError:
            logger.exception("failed")
    text = caplog.text
    assert secret not in text and "YWxpY2U6aHVudGVyMi1idXQtbG9uZ2Vy" not in text
    assert text.count("***") >= 3
    # short values are not blanked (they would blank ordinary words)
    credentials.remember("ab")
    assert redact("ab cd") == "ab cd"
