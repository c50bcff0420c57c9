"""The chaos soak's invariant checks (scripts/benchmarks/chaos_soak.py ``Soak.evaluate``) on known histories.

The CI soak (tests/e2e/test_chaos_soak.py) only ever sees a clean run, which would also pass if a check could
not see anything. Here each check is given the exchange view, the state view and the bots' events of a history
that breaks it (and one that does not): a duplicate client id, a lost or unknown fill, an order without its
intent, a stored position off the exchange's, a HOT/WARM mismatch, a hot-set key missing from HOT, an order
without the lease, an intent written while HALTED, a non-reducing order in REDUCE_ONLY, the exchange's position
above RISK_MAX_POSITION_SIZE.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bot_v2.domain import Fill, Liquidity, Order, OrderStatus, OrderType, Side, Symbol

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts" / "benchmarks"))

import _chaos  # noqa: E402
import chaos_soak  # noqa: E402

BTC = Symbol("BTC-USD")
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
SIZE = Decimal("0.001")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def order(n: int, side: Side, seconds: float, coid: str | None = None) -> Order:
    return Order(
        order_id=f"o{n}",
        client_order_id=coid or f"t-{n}",
        symbol=BTC,
        side=side,
        order_type=OrderType.MARKET,
        status=OrderStatus.FILLED,
        quantity=SIZE,
        filled_quantity=SIZE,
        created_at=at(seconds),
    )


def fill(n: int, side: Side, seconds: float, order_id: str | None = None) -> Fill:
    return Fill(
        trade_id=f"f{n}",
        order_id=order_id or f"o{n}",
        symbol=BTC,
        side=side,
        price=Decimal(50000),
        quantity=SIZE,
        commission=Decimal(0),
        liquidity=Liquidity.TAKER,
        trade_time=at(seconds),
    )


def soak_with(tmp_path: Path, events: list[dict[str, Any]]) -> chaos_soak.Soak:
    """A Soak (nothing started) whose one bot process wrote ``events``."""
    home = tmp_path / "a"
    (home / "data").mkdir(parents=True)
    path = home / "data" / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    args = argparse.Namespace(seed=1, poll_ms=50)
    soak = chaos_soak.Soak(args, tmp_path, {}, None, {}, "t-")  # type: ignore[arg-type]
    bot = chaos_soak.Bot("a1", {}, home, 0.05)
    bot.events_part = _chaos.FileSegment(path)
    soak.bots.append(bot)
    return soak


def ev(event_type: str, seconds: float, **fields: Any) -> dict[str, Any]:
    return {"ts": at(seconds).isoformat(), "type": event_type, **fields}


def holder_events(*orders: Order) -> list[dict[str, Any]]:
    """The lease taken, then for each order its intent and its order_placed, at its creation time."""
    out = [ev("lease", 0, kind="acquired", epoch=1)]
    for o in orders:
        seconds = (o.created_at - T0).total_seconds() if o.created_at else 0
        out.append(ev("order_intent", seconds, client_order_id=o.client_order_id, side=o.side))
        out.append(ev("order_placed", seconds, client_order_id=o.client_order_id, side=o.side))
    return out


def state_of(orders: list[Order], fills: list[Fill], position: Decimal, **extra: Any) -> dict[str, Any]:
    return {
        "live_fills": {f.trade_id for f in fills},
        "archived_fills": set(),
        "intents": {o.client_order_id for o in orders},
        "position": position,
        "coherence_mismatches": [],
        **extra,
    }


def evaluate(soak: chaos_soak.Soak, orders: list[Order], fills: list[Fill], state: dict[str, Any]) -> Any:
    return soak.evaluate((orders, fills), state, (orders, fills))


FLIP = [order(1, Side.BUY, 1), order(2, Side.SELL, 2), order(3, Side.BUY, 3)]
FLIP_FILLS = [fill(1, Side.BUY, 1), fill(2, Side.SELL, 2), fill(3, Side.BUY, 3)]


def test_a_clean_history_breaks_nothing(tmp_path: Path) -> None:
    found = evaluate(
        soak_with(tmp_path, holder_events(*FLIP)), FLIP, FLIP_FILLS, state_of(FLIP, FLIP_FILLS, SIZE)
    )
    assert found == {k: [] for k in chaos_soak.CATEGORIES}


def test_a_client_order_id_on_two_exchange_orders_is_a_duplicate(tmp_path: Path) -> None:
    orders = [*FLIP, order(4, Side.SELL, 4, coid="t-2")]
    fills = [*FLIP_FILLS, fill(4, Side.SELL, 4)]
    found = evaluate(soak_with(tmp_path, holder_events(*FLIP)), orders, fills, state_of(orders, fills, SIZE))
    assert found["duplicates"] == ["t-2 at the exchange as 2 orders (o2, o4)"]


def test_an_unstored_fill_a_stored_unknown_one_and_an_order_without_intent_are_lost(tmp_path: Path) -> None:
    state = state_of(FLIP, FLIP_FILLS[:2], SIZE)
    state["live_fills"].add("f9")
    state["intents"].discard("t-1")
    found = evaluate(soak_with(tmp_path, holder_events(*FLIP)), FLIP, FLIP_FILLS, state)
    assert found["lost"] == [
        "exchange fill f3 (order o3) not stored",
        "stored fill f9 unknown to the exchange",
        "exchange order t-1 without its intent in state",
    ]


def test_a_position_off_the_exchanges_a_hot_mismatch_or_a_key_missing_from_hot_is_incoherent(
    tmp_path: Path,
) -> None:
    state = state_of(
        FLIP, FLIP_FILLS, Decimal(0), coherence_mismatches=["position:BTC-USD:stale"], missing_in_hot=2
    )
    found = evaluate(soak_with(tmp_path, holder_events(*FLIP)), FLIP, FLIP_FILLS, state)
    assert found["incoherent"] == [
        "position:BTC-USD:stale (HOT vs WARM)",
        "2 key(s) of WARM's hot set missing from HOT",
        "position BTC-USD: stored minus derived from the exchange's fills = -0.001",
    ]


def test_an_order_without_the_lease_is_a_guard_violation(tmp_path: Path) -> None:
    events = holder_events(*FLIP)[1:]  # never took the lease
    found = evaluate(soak_with(tmp_path, events), FLIP, FLIP_FILLS, state_of(FLIP, FLIP_FILLS, SIZE))
    assert "a1 placed t-1 without holding the lease" in found["guard_violations"]


def test_an_intent_written_while_halted_is_a_guard_violation(tmp_path: Path) -> None:
    events = [*holder_events(*FLIP), ev("state_transition", 2.5, to_state="HALTED", at=at(2.5).isoformat())]
    found = evaluate(soak_with(tmp_path, events), FLIP, FLIP_FILLS, state_of(FLIP, FLIP_FILLS, SIZE))
    assert "a1 wrote the intent of t-3 while HALTED" in found["guard_violations"]
    assert not any("t-1" in v or "t-2" in v for v in found["guard_violations"])


@pytest.mark.parametrize(("since", "broken"), [(1.5, ["t-3"]), (0.5, ["t-1", "t-3"])])
def test_only_reducing_orders_pass_in_reduce_only(tmp_path: Path, since: float, broken: list[str]) -> None:
    """The transition carries its cycle's time and is recorded after that cycle's orders: it applies to
    intents of that time on. The sell of t-2 reduces the long t-1 opened; the buys from flat do not."""
    events = [
        *holder_events(*FLIP),
        ev("state_transition", since, to_state="REDUCE_ONLY", at=at(since).isoformat()),
    ]
    found = evaluate(soak_with(tmp_path, events), FLIP, FLIP_FILLS, state_of(FLIP, FLIP_FILLS, SIZE))
    assert [v.split()[2] for v in found["guard_violations"]] == broken
    assert all("in REDUCE_ONLY with the exchange's position at 0" in v for v in found["guard_violations"])


def test_the_exchange_position_above_the_size_limit_is_a_guard_violation(tmp_path: Path) -> None:
    orders = [order(1, Side.BUY, 1), order(2, Side.BUY, 2), order(3, Side.SELL, 3), order(4, Side.BUY, 4)]
    fills = [fill(1, Side.BUY, 1), fill(2, Side.BUY, 2), fill(3, Side.SELL, 3), fill(4, Side.BUY, 4)]
    found = evaluate(
        soak_with(tmp_path, holder_events(*orders)), orders, fills, state_of(orders, fills, 2 * SIZE)
    )
    assert found["guard_violations"] == [
        f"the exchange's position 0.002 after t-2 is above RISK_MAX_POSITION_SIZE {chaos_soak.MAX_POSITION}",
        f"the exchange's position 0.002 after t-4 is above RISK_MAX_POSITION_SIZE {chaos_soak.MAX_POSITION}",
    ]
