"""Secrets never reach logs in the clear."""

from __future__ import annotations

import logging
from pathlib import Path

from bot_v2.monitoring.logsetup import LOG_FILE_NAME, ThrottleFilter, configure_logging, reset_logging
from bot_v2.monitoring.masking import SecretMasker, mask_secret, mask_url


def test_mask_secret_shows_last_four() -> None:
    assert mask_secret("abcdefgh12345678") == "****5678"
    assert mask_secret("short") == "****"
    assert mask_secret(None) == "****"


def test_mask_url_hides_password_only() -> None:
    assert mask_url("postgresql://bot:supersecret99@db:5432/x") == "postgresql://bot:****et99@db:5432/x"
    assert mask_url("redis://localhost:6379/0") == "redis://localhost:6379/0"
    assert mask_url(None) is None


def test_masker_hides_registered_secrets_pem_and_url_passwords() -> None:
    masker = SecretMasker(["my-api-secret-value"])
    pem = "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----"
    text = masker.mask(f"key my-api-secret-value pem {pem} url redis://u:pw12345678@h/0")
    assert "my-api-secret-value" not in text and "****alue" in text
    assert "AAAA" not in text
    assert "pw12345678" not in text


def test_log_file_never_contains_secrets(tmp_path: Path) -> None:
    configure_logging(tmp_path, "INFO", ["sekrit-token-12345"], console=False)
    log = logging.getLogger("bot_v2.test")
    log.info("connecting with %s", "sekrit-token-12345")
    try:
        raise RuntimeError("failed with sekrit-token-12345")
    except RuntimeError:
        log.exception("boom")
    for handler in logging.getLogger().handlers:
        handler.flush()
    reset_logging()
    content = (tmp_path / LOG_FILE_NAME).read_text()
    assert "sekrit-token-12345" not in content
    assert "****2345" in content


def test_throttle_filter_suppresses_repeats_and_reports_count() -> None:
    throttle = ThrottleFilter(interval_seconds=3600)
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "redis down", None, None)
    assert throttle.filter(record) is True
    assert (
        throttle.filter(logging.LogRecord("x", logging.WARNING, __file__, 1, "redis down", None, None))
        is False
    )
    error = logging.LogRecord("x", logging.ERROR, __file__, 1, "redis down", None, None)
    assert throttle.filter(error) is True
