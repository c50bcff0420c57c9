"""Big HOT writes on a loaded machine are not mistaken for a hung Redis.

The HOT command timeout (``STATE_HOT_COMMAND_TIMEOUT_SECONDS``, 0.1 s) finds a hung Redis within the cycle
budget. A 20,000-key write (a seed, a checkpoint restore's HOT write, a hot-set page) is legitimately slower
than that when both CPUs are busy; it must succeed without degrading HOT (which would start a restore).
The test loads the machine with CPU-bound processes (one per CPU, plus one) while the writes run, with the
default timeout.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

from bot_v2.state import HotState, StateCategory, StateManager
from bot_v2.state.settings import ColdBackend, StateSettings

KEYS = 20_000
VALUE = {"order_id": "x" * 24, "status": "OPEN", "size": "0.0100", "price": "65000.00", "pad": "p" * 300}


@contextmanager
def busy_cpus() -> Iterator[None]:
    """One busy-looping process per CPU, plus one, while the block runs."""
    hogs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range((os.cpu_count() or 2) + 1)
    ]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def default_timeouts(settings: StateSettings) -> StateSettings:
    settings = replace(settings, cold_backend=ColdBackend.DIRECTORY)
    assert settings.hot_command_timeout_seconds == 0.1  # the default, as in production
    return settings


async def test_a_20000_key_write_and_checkpoint_restore_on_a_loaded_machine_keep_hot_up(
    real_state_settings: StateSettings,
) -> None:
    async with await StateManager.create(default_timeouts(real_state_settings)) as state:
        items = {f"orders:big:{i:06d}": {**VALUE, "i": i} for i in range(KEYS)}
        with busy_cpus():
            await state.batch_set_state(items, StateCategory.ORDERS)
        assert state.health().hot_state is HotState.UP, state.health().last_hot_error
        info = await state.checkpoints.create_checkpoint("test")
        await state.batch_set_state({"orders:big:000000": "after the checkpoint"}, StateCategory.ORDERS)
        with busy_cpus():
            report = await state.checkpoints.restore_checkpoint(info.checkpoint_id)
        assert report.keys_restored == KEYS
        assert state.health().hot_state is HotState.UP, state.health().last_hot_error
        sample = [f"orders:big:{i:06d}" for i in range(0, KEYS, 997)]
        assert await state.batch_get_state(sample) == {k: items[k] for k in sample}
        assert (await state.verify_coherence()).ok
