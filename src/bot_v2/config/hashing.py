"""The effective configuration's hash: which settings a bot ran with, comparable across runs and hosts.

Recorded at start in the ``bot_started`` event and in ``health.json`` (``config_hash``): two bots with the same
hash trade with the same settings; a changed hash after a deploy says the configuration changed. Secrets are
left out (API key and secret, passwords, AWS keys; URLs with their password masked), so the hash can be
shown and compared freely and rotating a key does not change it. Paths are kept: they are configuration too.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from bot_v2.monitoring.masking import mask_url

__all__ = ["config_hash", "effective_config"]

#: Field names whose values never enter the hash (nor ``effective_config``).
SECRET_FIELDS = frozenset(
    {
        "secrets",
        "api_key",
        "api_secret",
        "key_file",
        "aws_access_key_id",
        "aws_secret_access_key",
        "redis_password",
        "redis_sentinel_password",
    }
)
_URL_FIELDS = frozenset({"redis_url", "database_url"})


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: ("****" if f.name in SECRET_FIELDS else _field(f.name, getattr(value, f.name)))
            for f in dataclasses.fields(value)
        }
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, tuple | list | frozenset | set):
        items = [_plain(v) for v in value]
        return sorted(items, key=str) if isinstance(value, frozenset | set) else items
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Decimal | Path | datetime):
        return str(value)
    return value


def _field(name: str, value: Any) -> Any:
    if name in _URL_FIELDS and isinstance(value, str):
        return mask_url(value)
    return _plain(value)


def effective_config(settings: Any) -> dict[str, Any]:
    """The settings as plain JSON values, secrets replaced by ``****``."""
    plain = _plain(settings)
    assert isinstance(plain, dict)
    return plain


def config_hash(settings: Any) -> str:
    """SHA-256 (first 16 hex digits) of the canonical JSON of ``effective_config(settings)``."""
    text = json.dumps(effective_config(settings), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
