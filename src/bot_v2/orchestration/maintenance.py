"""State maintenance with the bot stopped: a restore, a batch delete -- each holding the bot id's lease.

Writing a bot's records while it trades would race its own writes, so maintenance takes the lease first
(refused while any process holds it, naming the holder; a lease left by a crashed bot is waited out, at most
its TTL) and writes fenced with that epoch: no bot can start in the middle. ``--restore-checkpoint`` and the
runbook's Python snippets (``bot_v2.state.state_manager``, ``bot_v2.state.checkpoint.restoration``) use it.
Functions here return data; the CLI renders it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict

from bot_v2.config import BotSettings
from bot_v2.errors import InputError, LeaseHeldError, StateError
from bot_v2.orchestration import oplog
from bot_v2.orchestration.concurrency import cancel_and_wait
from bot_v2.orchestration.wiring import open_state, reader_settings
from bot_v2.state import RestoreReport, StateManager


@asynccontextmanager
async def exclusive_state(settings: BotSettings, role: str, what: str) -> AsyncIterator[StateManager]:
    """The bot's state, opened as its only writer: the lease is held (role ``role``) until the block ends.

    ``LeaseHeldError`` names ``what`` was refused and the holder when a bot runs.
    """
    from bot_v2.orchestration.lease import LeaseKeeper, new_claim

    async with AsyncExitStack() as stack:
        state = await stack.enter_async_context(open_state(reader_settings(settings)))
        # maintenance completes no trading cycle: its watchdog is the work itself, not the loop's bound
        lease = dataclasses.replace(settings.lease, watchdog_seconds=math.inf)
        keeper = LeaseKeeper(state, lease, new_claim(role), bot_id=settings.bot_id)
        try:
            await keeper.acquire()
        except LeaseHeldError as exc:
            raise LeaseHeldError(f"{what} refused: {exc}; stop the bot first") from None
        stack.push_async_callback(keeper.release)
        renewal = asyncio.get_running_loop().create_task(keeper.run(), name=f"{role}-lease")
        stack.push_async_callback(cancel_and_wait, renewal)
        await state.take_ownership(keeper.epoch)
        yield state


async def restore_checkpoint(
    settings: BotSettings, checkpoint_id: str, *, verify_only: bool
) -> tuple[RestoreReport, bool]:
    """Verify (and unless ``verify_only`` restore) a checkpoint; return the report and whether the restored
    state holds the running marker (the next start then recovers as after a crash).

    An unknown or malformed id is an ``InputError``; corruption and tier errors keep their own types.
    """
    from bot_v2.monitoring.events import EventStore, EventType
    from bot_v2.orchestration.keys import RUNNING_KEY

    async with AsyncExitStack() as stack:
        if verify_only:
            state = await stack.enter_async_context(open_state(reader_settings(settings)))
        else:
            state = await stack.enter_async_context(
                exclusive_state(settings, "restore", "--restore-checkpoint")
            )
        started = time.perf_counter()
        try:
            report = await state.checkpoints.restore_checkpoint(checkpoint_id, verify_only=verify_only)
        except StateError as exc:
            if type(exc) is StateError:  # an unknown or malformed id, or no checkpoint at all: bad input
                raise InputError(f"--restore-checkpoint: {exc}") from None
            raise
        marker_restored = False
        if not verify_only:
            oplog.restored_from_checkpoint(
                report.checkpoint_id,
                restored=report.keys_restored,
                deleted=report.keys_deleted,
                expired=report.keys_expired,
                elapsed_seconds=time.perf_counter() - started,
            )
            marker_restored = await state.get_state(RUNNING_KEY) is not None
    if not verify_only:
        events = EventStore(settings.events_path)
        await events.emit(EventType.CHECKPOINT_RESTORED, by="cli", **asdict(report))
        events.close()
    return report, marker_restored


async def batch_delete(settings: BotSettings, keys: Iterable[str]) -> int:
    """Delete ``keys`` of the bot (relative names, e.g. ``expired:x``) in one batch; return how many existed.

    Holds the lease while it writes: refused (``LeaseHeldError``) while the bot runs.
    """
    wanted = list(dict.fromkeys(keys))
    if not wanted:
        return 0
    async with exclusive_state(settings, "maintenance", "batch delete") as state:
        return await state.batch_delete_state(wanted)
