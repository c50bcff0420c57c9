"""Logging configuration, called once by the CLI: console + rotating var/logs/perps_bot.log, secrets masked.

Repeated identical messages are throttled so a flapping dependency cannot flood the log.
"""

from __future__ import annotations

import logging
import logging.handlers
import time
from collections.abc import Iterable
from pathlib import Path

from bot_v2.monitoring.masking import MaskingFilter, SecretMasker

LOG_FILE_NAME = "perps_bot.log"
_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class ThrottleFilter(logging.Filter):
    """Drop a record whose (logger, level, template) was emitted less than ``interval_seconds`` ago."""

    def __init__(self, interval_seconds: float = 30.0, max_keys: int = 2048) -> None:
        super().__init__()
        self.interval_seconds = interval_seconds
        self.max_keys = max_keys
        self._last: dict[tuple[str, int, str], float] = {}
        self._suppressed: dict[tuple[str, int, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING:  # errors always pass; info/debug are not the flapping kind
            return True
        template = getattr(record, "_throttle_template", None)
        if template is None:
            template = str(record.msg)
            record._throttle_template = template
        key = (record.name, record.levelno, template)
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_seconds:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        if len(self._last) >= self.max_keys:
            self._last.clear()
        self._last[key] = now
        skipped = self._suppressed.pop(key, 0)
        if skipped:
            record.msg = f"{record.msg} (repeated {skipped} more times)"
        return True


class ConsoleFormatter(logging.Formatter):
    """One line per record on the console: tracebacks go to the log file only."""

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            return super().format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def reset_logging() -> None:
    """Remove and close every handler on the root logger."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()


def configure_logging(
    log_dir: Path, level: str = "INFO", secrets: Iterable[str] = (), console: bool = True
) -> SecretMasker:
    """Install handlers on the root logger; return the masker so callers can register more secrets."""
    masker = SecretMasker(secrets)
    reset_logging()
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    formatter = logging.Formatter(_FORMAT)
    formatter.converter = time.gmtime  # log timestamps in UTC
    handlers: list[logging.Handler] = []
    log_dir.mkdir(parents=True, exist_ok=True)
    file_handler = logging.handlers.RotatingFileHandler(
        log_dir / LOG_FILE_NAME, maxBytes=10 * 1024 * 1024, backupCount=5, encoding="utf-8"
    )
    file_handler.setLevel(logging.DEBUG if level == "DEBUG" else logging.INFO)
    handlers.append(file_handler)
    file_handler.setFormatter(formatter)
    if console:
        stream = logging.StreamHandler()
        stream.setLevel(getattr(logging, level, logging.INFO))
        console_formatter = ConsoleFormatter(_FORMAT)
        console_formatter.converter = time.gmtime
        stream.setFormatter(console_formatter)
        handlers.append(stream)
    for handler in handlers:
        handler.addFilter(MaskingFilter(masker))
        handler.addFilter(ThrottleFilter())
        root.addHandler(handler)
    # The SDK adds its own stderr handler at import and logs every HTTP error at ERROR; the adapter translates
    # those errors already, so silence it (importing it first so its import-time setup cannot undo this).
    import coinbase.rest  # noqa: F401

    for name in ("coinbase.RESTClient", "coinbase.WSClient"):
        sdk_logger = logging.getLogger(name)
        for handler in list(sdk_logger.handlers):
            sdk_logger.removeHandler(handler)
        sdk_logger.setLevel(logging.CRITICAL)
    for noisy in ("urllib3", "asyncio", "botocore", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return masker
