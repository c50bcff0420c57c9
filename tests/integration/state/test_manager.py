"""StateManager behaviour over the embedded combo and the real-services combo (same tests, both)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from bot_v2.errors import StateEncodingError, StateKeyError
from bot_v2.state import StateCategory, StateManager, StateWrite
from bot_v2.state.migrations import latest_version
from bot_v2.state.migrations.postgres import MIGRATIONS as PG_MIGRATIONS
from bot_v2.state.migrations.sqlite import MIGRATIONS as SQLITE_MIGRATIONS
from bot_v2.state.settings import StateSettings
from tests.helpers import eventually_async

ORDERS, FILLS, CHECKPOINTS = StateCategory.ORDERS, StateCategory.FILLS, StateCategory.CHECKPOINTS


async def test_set_get_round_trip_and_versions(sm: StateManager) -> None:
    value = {"qty": Decimal("0.10"), "at": datetime(2024, 5, 1, tzinfo=UTC), "tags": ["a", None, 1.5]}
    assert await sm.set_state("orders:pb-1", value, ORDERS) == 1
    assert await sm.get_state("orders:pb-1") == value
    assert await sm.set_state("orders:pb-1", {"qty": Decimal("0.2")}, ORDERS) == 2
    assert await sm.get_state("orders:pb-1") == {"qty": Decimal("0.2")}
    assert await sm.get_state("orders:missing") is None


async def test_every_category_round_trips(sm: StateManager) -> None:
    writes = [StateWrite(f"{c.value}:k", {"c": c.value}, c) for c in StateCategory]
    versions = await sm.batch_write(writes)
    assert versions == {w.key: 1 for w in writes}
    assert await sm.batch_get_state([w.key for w in writes]) == {w.key: w.value for w in writes}


async def test_batch_set_get_delete(sm: StateManager) -> None:
    items = {f"fills:{i}": {"i": i, "px": Decimal(i) / 7} for i in range(50)}
    assert await sm.batch_set_state(items, FILLS) == {k: 1 for k in items}
    got = await sm.batch_get_state([*items, "fills:none"])
    assert got == items
    assert await sm.batch_delete_state(["fills:1", "fills:2", "fills:none", "fills:1"]) == 2
    assert await sm.delete_state("fills:3") is True
    assert await sm.delete_state("fills:3") is False
    assert len(await sm.batch_get_state(items)) == 47


async def test_later_write_of_same_key_in_a_batch_wins(sm: StateManager) -> None:
    versions = await sm.batch_write([StateWrite("orders:1", 1, ORDERS), StateWrite("orders:1", 2, ORDERS)])
    assert versions == {"orders:1": 1}
    assert await sm.get_state("orders:1") == 2


async def test_keys_by_pattern_are_relative_and_cover_all_tiers(sm: StateManager) -> None:
    await sm.batch_write(
        [
            StateWrite("orders:a", 1, ORDERS),
            StateWrite("orders:b", 1, FILLS),
            StateWrite("orders:c", 1, CHECKPOINTS),
            StateWrite("intents:a", 1, StateCategory.INTENTS),
        ]
    )
    assert await sm.get_keys_by_pattern("orders:*") == ["orders:a", "orders:b", "orders:c"]
    assert await sm.get_keys_by_pattern("orders:*", hot_only=True) == ["orders:a"]
    assert await sm.get_keys_by_pattern("*:a") == ["intents:a", "orders:a"]


async def test_ttl_none_never_expires_and_ttl_expires_everywhere(sm: StateManager) -> None:
    await sm.set_state("marks:BTC", {"px": "1"}, StateCategory.MARKS, ttl_seconds=0.3)
    await sm.set_state("marks:ETH", {"px": "2"}, StateCategory.MARKS, ttl_seconds=None)

    async def expired() -> bool:
        return await sm.get_state("marks:BTC") is None

    await eventually_async(expired, timeout=5)
    assert await sm.get_state("marks:ETH") == {"px": "2"}
    assert await sm.get_keys_by_pattern("marks:*") == ["marks:ETH"]


async def test_demote_then_read_promotes_back(sm: StateManager) -> None:
    await sm.batch_set_state({f"orders:{i}": i for i in range(5)}, ORDERS)
    assert await sm.demote_to_cold(["orders:0", "orders:1", "orders:none"]) == 2
    assert await sm.get_keys_by_pattern("orders:*", hot_only=True) == ["orders:2", "orders:3", "orders:4"]
    stats = await sm.get_storage_stats()
    assert stats.warm_records_by_tier.get("cold") == 2
    assert await sm.batch_get_state(["orders:0", "orders:1"]) == {"orders:0": 0, "orders:1": 1}
    assert await sm.get_keys_by_pattern("orders:*", hot_only=True) == [f"orders:{i}" for i in range(5)]
    assert (await sm.verify_coherence()).ok


async def test_promote_to_hot_caches_warm_only_keys_and_keeps_them_hot(sm: StateManager) -> None:
    await sm.set_state("control:kill", False, StateCategory.CONTROL)
    assert await sm.get_keys_by_pattern("control:*", hot_only=True) == []
    assert await sm.promote_to_hot(["control:kill", "control:none"]) == 1
    assert await sm.get_keys_by_pattern("control:*", hot_only=True) == ["control:kill"]
    assert await sm.set_state("control:kill", True, StateCategory.CONTROL) == 2  # write-through while cached
    report = await sm.verify_coherence()
    assert report.ok and report.checked == 1
    assert await sm.get_state("control:kill") is True


async def test_checkpoints_stay_cold_when_read(sm: StateManager) -> None:
    await sm.set_state("checkpoints:1", {"blob": "x" * 1000}, CHECKPOINTS)
    assert await sm.get_state("checkpoints:1") == {"blob": "x" * 1000}
    stats = await sm.get_storage_stats()
    assert stats.warm_records_by_tier == {"cold": 1}
    assert stats.cold_objects == 1 and stats.hot_keys == 0


async def test_cold_writes_one_object_per_batch(sm: StateManager) -> None:
    await sm.batch_set_state({f"archive:{i}": i for i in range(100)}, StateCategory.ARCHIVE)
    await sm.batch_set_state({f"orders:{i}": i for i in range(100)}, ORDERS)
    await sm.demote_to_cold([f"orders:{i}" for i in range(100)])
    assert (await sm.get_storage_stats()).cold_objects == 2


async def test_storage_stats(sm: StateManager) -> None:
    await sm.batch_write([StateWrite("orders:1", "x", ORDERS), StateWrite("fills:1", "yy", FILLS)])
    stats = await sm.get_storage_stats()
    assert (stats.hot_keys, stats.warm_records, stats.warm_value_bytes) == (1, 2, 3 + 4)
    assert stats.warm_records_by_tier == {"hot": 1, "warm": 1}
    assert stats.schema_version == latest_version(SQLITE_MIGRATIONS) == latest_version(PG_MIGRATIONS)


@pytest.mark.parametrize(
    "bad",
    [
        StateWrite("orders:ok", {1, 2}, ORDERS),
        StateWrite("orders:ok", datetime(2024, 1, 1), ORDERS),
        StateWrite("orders:ok", "x" * 5000, ORDERS),
        StateWrite("orders:ok", 1, "nope"),  # type: ignore[arg-type]
        StateWrite("orders:ok", 1, ORDERS, ttl_seconds=0),
        StateWrite("orders:*", 1, ORDERS),
        StateWrite("", 1, ORDERS),
        StateWrite("orders: x", 1, ORDERS),
    ],
)
async def test_bad_input_writes_nothing(state_settings: StateSettings, bad: StateWrite) -> None:
    from dataclasses import replace

    async with await StateManager.create(replace(state_settings, max_value_bytes=4096)) as sm:
        with pytest.raises((StateEncodingError, StateKeyError)) as info:
            await sm.batch_write([StateWrite("orders:good", 1, ORDERS), bad])
        assert repr(bad.key) in str(info.value)
        assert await sm.get_keys_by_pattern("*") == []
        assert (await sm.get_storage_stats()).hot_keys == 0


async def test_bad_keys_in_reads_and_deletes_are_rejected(sm: StateManager) -> None:
    for call in (sm.get_state("a*"), sm.batch_get_state(["ok:1", "x y"]), sm.batch_delete_state(["[x]"])):
        with pytest.raises(StateKeyError):
            await call
    with pytest.raises(StateKeyError):
        await sm.get_keys_by_pattern(f"{sm.bot_id}:*")


async def test_bots_sharing_services_never_see_each_other(state_settings: StateSettings) -> None:
    from dataclasses import replace

    other_settings = replace(state_settings, bot_id=state_settings.bot_id + "-b")
    async with await StateManager.create(state_settings) as a, await StateManager.create(other_settings) as b:
        await a.batch_set_state({"orders:1": "a", "orders:2": "a"}, ORDERS)
        await b.batch_set_state({"orders:1": "b"}, ORDERS)
        assert await a.get_state("orders:1") == "a"
        assert await b.get_keys_by_pattern("*") == ["orders:1"]
        assert await b.get_keys_by_pattern("*", hot_only=True) == ["orders:1"]
        assert await b.batch_delete_state(["orders:1", "orders:2"]) == 1
        assert await a.batch_get_state(["orders:1", "orders:2"]) == {"orders:1": "a", "orders:2": "a"}
        assert (await a.verify_coherence()).checked == 2
        assert (await b.get_storage_stats()).warm_records == 0
