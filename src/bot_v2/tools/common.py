"""Shared parts of the operator scripts: check results, their table / JSON output, argument parsing, logging."""

from __future__ import annotations

import argparse
import enum
import logging
import logging.handlers
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console
from rich.table import Table

from bot_v2.monitoring.masking import MaskingFilter, SecretMasker

__all__ = [
    "CheckResult",
    "CheckStatus",
    "ToolArgumentParser",
    "checks_exit_code",
    "checks_table",
    "checks_to_json",
    "configure_tool_logging",
    "fail",
    "one_line",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class CheckStatus(enum.StrEnum):
    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"
    SKIP = "SKIP"


_STYLE = {
    CheckStatus.PASS: "green",
    CheckStatus.WARN: "yellow",
    CheckStatus.FAIL: "bold red",
    CheckStatus.SKIP: "dim",
}


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check: a stable ``name``, its status and a one-line ``reason`` (secrets already masked)."""

    name: str
    status: CheckStatus
    reason: str
    seconds: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "reason", one_line(self.reason))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status.value,
            "reason": self.reason,
            "seconds": None if self.seconds is None else round(self.seconds, 3),
        }


def one_line(text: object, limit: int = 300) -> str:
    """Collapse whitespace (tracebacks, multi-line vendor messages) into one line of at most ``limit``."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def checks_exit_code(results: Iterable[CheckResult]) -> int:
    """0 unless any check FAILed (then 1). WARN and SKIP do not fail a run."""
    return EXIT_FAILED if any(r.status is CheckStatus.FAIL for r in results) else EXIT_OK


def checks_table(title: str, results: Sequence[CheckResult]) -> Table:
    out = Table(title=title, title_justify="left", header_style="bold")
    out.add_column("Check")
    out.add_column("Status")
    out.add_column("Reason", overflow="fold")
    out.add_column("Time", justify="right")
    for result in results:
        style = _STYLE[result.status]
        seconds = "" if result.seconds is None else f"{result.seconds:.2f}s"
        out.add_row(result.name, f"[{style}]{result.status.value}[/{style}]", result.reason, seconds)
    return out


def checks_to_json(tool: str, results: Sequence[CheckResult], **extra: Any) -> dict[str, Any]:
    counts = {s.value: sum(1 for r in results if r.status is s) for s in CheckStatus}
    return {
        "tool": tool,
        **extra,
        "ok": checks_exit_code(results) == EXIT_OK,
        "counts": counts,
        "checks": [r.to_dict() for r in results],
    }


def summary_line(results: Sequence[CheckResult]) -> str:
    counts = {s: sum(1 for r in results if r.status is s) for s in CheckStatus}
    verdict = "FAILED" if counts[CheckStatus.FAIL] else "OK"
    return (
        f"{verdict}: {counts[CheckStatus.PASS]} pass, {counts[CheckStatus.WARN]} warn, "
        f"{counts[CheckStatus.FAIL]} fail, {counts[CheckStatus.SKIP]} skipped"
    )


def fail(message: str, code: int, masker: SecretMasker | None = None) -> NoReturn:
    """Print ``error: <one line>`` on stderr and exit with ``code``."""
    text = one_line(masker.mask(message) if masker is not None else message, limit=500)
    print(f"error: {text}", file=sys.stderr)
    sys.exit(code)


class ToolArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line error (exit 2) and the examples epilog kept as written."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(**kwargs)

    def error(self, message: str) -> NoReturn:
        fail(f"{message} (see {self.prog} --help)", EXIT_USAGE)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def configure_tool_logging(log_dir: Path, name: str, secrets: Iterable[str] = ()) -> SecretMasker:
    """Log to ``<log_dir>/<name>.log`` only (the terminal belongs to the tool's output), secrets masked.

    A tool gets its own file: the bot's rotating ``perps_bot.log`` must have a single writer.
    """
    masker = SecretMasker(secrets)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.setLevel(logging.INFO)
    handler: logging.Handler
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(
            log_dir / f"{name}.log", maxBytes=5 * 1024 * 1024, backupCount=2, encoding="utf-8"
        )
    except OSError:
        handler = logging.NullHandler()  # an unwritable log dir is reported by the tool, not fatal here
    formatter = logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    handler.addFilter(MaskingFilter(masker))
    root.addHandler(handler)
    # The SDK installs its own stderr handler at import; the adapter maps its errors already.
    import coinbase.rest  # noqa: F401

    for sdk in ("coinbase.RESTClient", "coinbase.WSClient"):
        sdk_logger = logging.getLogger(sdk)
        for h in list(sdk_logger.handlers):
            sdk_logger.removeHandler(h)
        sdk_logger.setLevel(logging.CRITICAL)
    for noisy in ("urllib3", "asyncio", "botocore", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return masker


def make_console(width: int | None = None) -> Console:
    """A console for tool output: a wide virtual terminal when piped (no ids wrapped mid-token)."""
    return Console(highlight=False, width=width if width else (None if sys.stdout.isatty() else 160))
