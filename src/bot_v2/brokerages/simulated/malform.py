"""The malformed-response fault: the simulator answers with broken JSON, missing fields, nulls or wrong types.

The request is handled for real first (an order IS created), then the JSON body of the answer is damaged, so
tests and drills prove the adapter turns whatever a confused or half-upgraded exchange may send into one
``ExchangeProtocolError`` line (never a ``KeyError`` traceback, never a wrong domain value). Deterministic
for a given seed.
"""

from __future__ import annotations

import json
import random
from typing import Any

KINDS = ("json", "missing", "nulls", "types", "empty")
_WRONG: tuple[Any, ...] = ("", "x", "NaN", "1e999", -1, 0, 1.5, True, [], {}, None, "2026-13-45T99:99:99Z")


def malform(body: bytes, kind: str, rng: random.Random) -> bytes:
    """Return ``body`` damaged the ``kind`` way (``random``: one of ``KINDS``)."""
    if kind == "random":
        kind = rng.choice(KINDS)
    if kind == "json" or not body:
        cut = rng.randrange(len(body)) if body else 0
        return body[:cut] + rng.choice([b"", b"}", b"\x00", b"<html>502 Bad Gateway</html>", b"\xff\xfe"])
    try:
        document = json.loads(body)
    except ValueError:
        return body[: len(body) // 2]
    if kind == "empty":
        return b"{}" if isinstance(document, dict) else b"[]"
    share = rng.choice((0.1, 0.3, 1.0))
    return json.dumps(_walk(document, kind, rng, share)).encode()


def _walk(node: Any, kind: str, rng: random.Random, share: float) -> Any:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if kind == "missing" and rng.random() < share:
                continue
            out[key] = _walk(value, kind, rng, share)
        return out
    if isinstance(node, list):
        return [_walk(item, kind, rng, share) for item in node]
    if rng.random() >= share:
        return node
    if kind == "nulls":
        return None
    if kind == "types":
        return rng.choice(_WRONG)
    return node
