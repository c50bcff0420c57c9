"""Atomic JSON state files: write to a temp file, fsync, rename, fsync the directory."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

__all__ = ["STATE_FILE", "load_state", "save_state"]

STATE_FILE = "exchange.json"


def save_state(directory: Path, state: dict[str, Any]) -> None:
    """Replace ``directory/exchange.json`` with ``state`` so a crash leaves the old or the new file, whole."""
    path = directory / STATE_FILE
    tmp = directory / f".{STATE_FILE}.{uuid.uuid4().hex}.tmp"
    data = json.dumps(state, separators=(",", ":")).encode()
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_state(directory: Path) -> dict[str, Any] | None:
    """Return the saved state, or None when there is none yet."""
    path = directory / STATE_FILE
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data
