"""The log lines an operator greps for: the wording of the customer's runbook, with this bot's real figures.

Operators came from the bot this one replaces; its runbook tells them to ``grep "Redis recovery"``,
``grep "Recovered.*keys to Redis"``, ``grep "Cancelled.*pending orders"``, ``grep "data_loss_estimate"`` and
to average ``grep "recovery.*elapsed" | awk '{sum+=$NF; count++} END {print sum/count "ms"}'``. Each line is
written here, in one place, so the wording cannot drift from docs/RUNBOOK.md (``tests/e2e/test_runbook.py``
runs every grep of the runbook against a drill's log). Every recovery line contains ``recovery completed``
and ends with ``elapsed_ms: <number>``: the last field is what the runbook's awk one-liner averages.

Only the lines; what they describe is recorded as events and metrics by their callers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from decimal import Decimal

logger = logging.getLogger(__name__)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def hot_recovered(
    backend: str,
    *,
    keys_restored: int,
    keys_evicted: int,
    keys_verified: int,
    repaired: int,
    corrupt: int,
    restore_seconds: float,
    outage_seconds: float,
) -> None:
    """``Redis recovery completed: Recovered 1000 keys to Redis in 7.4 ms ...``."""
    name = "Redis" if backend == "redis" else f"HOT ({backend})"
    logger.info(
        "%s recovery completed: Recovered %d keys to %s in %s ms (outage %.3f s, evicted %d, verified %d, "
        "repaired %d, corrupt in WARM %d, coherent=%s) elapsed_ms: %s",
        name,
        keys_restored,
        name,
        _ms(restore_seconds),
        outage_seconds,
        keys_evicted,
        keys_verified,
        repaired,
        corrupt,
        corrupt == 0,
        _ms(restore_seconds),
    )


def cache_hit_rate(hits: int, misses: int, cycles: int) -> None:
    """``cache_hit_rate=0.98`` of the reads since the last HOT recovery (runbook: cache hit rate after it)."""
    total = hits + misses
    rate = f"{hits / total:.3f}" if total else "n/a"
    logger.info(
        "HOT cache after recovery: cache_hit_rate=%s (%d reads from HOT, %d from WARM, %d cycles)",
        rate,
        hits,
        misses,
        cycles,
    )


def cold_degraded(backend: str, spool_dir: str, error: str | None) -> None:
    """``S3 unavailable: local storage fallback ...`` when COLD writes start to spool."""
    name = "S3" if backend == "s3" else f"COLD ({backend})"
    logger.warning(
        "%s unavailable: local storage fallback, COLD writes spool to %s until it answers "
        "(system:s3_available=false): %s",
        name,
        spool_dir,
        error,
    )


def cold_recovered(
    backend: str, *, objects: int, bytes_synced: int, sync_seconds: float, outage: float
) -> None:
    """``S3 recovery completed: synced N objects from the local spool ...``."""
    name = "S3" if backend == "s3" else f"COLD ({backend})"
    logger.info(
        "%s recovery completed: synced %d objects (%d bytes) from the local storage fallback in %s ms, every one "
        "read back (outage %.3f s, system:s3_available=true) elapsed_ms: %s",
        name,
        objects,
        bytes_synced,
        _ms(sync_seconds),
        outage,
        _ms(sync_seconds),
    )


def warm_recovered(
    backend: str, *, outage_seconds: float, cycles_failed: int, writes_committed: int, recovery_seconds: float
) -> None:
    """``PostgreSQL recovery completed: ... data_loss_estimate=0``.

    While WARM is down a cycle fails before any order leaves (an intent cannot be made durable) and its state
    writes stay queued; the first cycle after commits them all, so the estimate is the writes still queued
    after it: 0.
    """
    name = "PostgreSQL" if backend == "postgres" else f"WARM ({backend})"
    logger.info(
        "%s recovery completed: answering again after %.3f s, %d cycles retried while down (no order sent), "
        "%d queued writes committed, data_loss_estimate=0 records elapsed_ms: %s",
        name,
        outage_seconds,
        cycles_failed,
        writes_committed,
        _ms(recovery_seconds),
    )


def engine_recovered(
    *,
    unclean: bool,
    adopted: int,
    intents: int,
    missed_fills: int,
    coherent: bool,
    trading_state: str,
    elapsed_ms: float,
) -> None:
    """``Trading engine recovery completed: ...`` after a start that found an unclean shutdown."""
    if not unclean:
        return
    logger.warning(
        "Trading engine recovery completed: status=recovered after an unclean shutdown, adopted %d orders, "
        "resolved %d intents, booked %d missed fills, coherent=%s, trading %s elapsed_ms: %.1f",
        adopted,
        intents,
        missed_fills,
        coherent,
        trading_state,
        elapsed_ms,
    )


def cancelled_pending(count: int, batches: int, elapsed_ms: float, policy: str) -> None:
    """``Cancelled 12 pending orders in 1 batch (3.1 ms)``."""
    logger.info(
        "Cancelled %d pending orders in %d batch%s (%.1f ms, policy %s)",
        count,
        batches,
        "" if batches == 1 else "es",
        elapsed_ms,
        policy,
    )


def position_validation(checked: int, mismatches: Sequence[str]) -> None:
    """``position validation: 3 positions match`` (or the mismatches, at ERROR)."""
    if not mismatches:
        logger.info("position validation: %d positions match the exchange", checked)
        return
    logger.error(
        "position validation: %d of %d positions differ from the exchange: %s",
        len(mismatches),
        checked,
        "; ".join(mismatches),
    )


def restored_from_checkpoint(
    checkpoint_id: str, *, restored: int, deleted: int, expired: int, elapsed_seconds: float
) -> None:
    """``Restored from checkpoint <id>: ...`` (``--restore-checkpoint`` and the runbook's snippet)."""
    logger.info(
        "Restored from checkpoint %s: %d keys restored, %d deleted, %d expired; checkpoint recovery completed "
        "elapsed_ms: %s",
        checkpoint_id,
        restored,
        deleted,
        expired,
        _ms(elapsed_seconds),
    )


def order_filled(
    client_order_id: str,
    side: str,
    quantity: Decimal,
    symbol: str,
    price: Decimal,
    fee: Decimal,
    trade_id: str,
) -> None:
    """``order pb-... filled: BUY 0.01 BTC-USD @ 65000`` (runbook: ``grep "order.*filled"``)."""
    logger.info(
        "order %s filled: %s %s %s @ %s (fee %s, trade %s)",
        client_order_id,
        side,
        quantity,
        symbol,
        price,
        fee,
        trade_id,
    )


def cycle_pnl(
    number: int, realized: Decimal, unrealized: Decimal, today: Decimal | None, fees: Decimal
) -> None:
    """``cycle 12 PnL: realized ... unrealized ... today ...`` (runbook: ``grep "PnL"``)."""
    logger.info(
        "cycle %d PnL: realized %s unrealized %s today %s fees %s USD",
        number,
        _money(realized),
        _money(unrealized),
        "n/a" if today is None else _money(today),
        _money(fees),
    )


def _money(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01')):+}"
