"""Compatibility facade: the ``StateManager`` the customer's runbook snippets use, as they print it.

The runbook of the bot this one replaces (docs/RUNBOOK.md "Runbook snippets") has operators paste::

    from bot_v2.state.state_manager import StateManager
    state_mgr = StateManager.create()                 # no argument, not awaited
    stale = await state_mgr.get_keys_by_pattern("expired:*")
    deleted = await state_mgr.batch_delete_state(stale)

The real ``bot_v2.state.StateManager.create(settings)`` is async and needs the settings; this facade reads them
the way ``perps-bot`` does (``PERPS_PROFILE``, default dev; ``.env`` in the working directory, then the
environment) and opens the real manager for each call, closing it before returning: a snippet that never
closes anything leaks no connection. Reads open the state read-only (safe while the bot runs); deletes take
the bot id's lease (``orchestration.maintenance``): refused, naming the holder, while the bot runs.

Logging: when nothing configured it (a pasted snippet), ``create()`` appends INFO lines to the bot's log,
``var/logs/perps_bot.log`` (secrets masked; appends only, the running bot stays the one that rotates it), so
``grep "Restored from checkpoint" var/logs/perps_bot.log`` finds the snippet's restore; WARNING and above also
go to stderr.

It imports the configuration and orchestration layers lazily: the state package itself stays below them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot_v2.config import BotSettings


def _log_to_bot_log(settings: BotSettings) -> None:
    """Append INFO+ to the bot's log file and WARNING+ to stderr, unless logging is configured already."""
    import logging

    from bot_v2.monitoring.logsetup import LOG_FILE_NAME
    from bot_v2.monitoring.masking import MaskingFilter, SecretMasker

    root = logging.getLogger()
    if root.handlers:
        return
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    masking = MaskingFilter(SecretMasker(settings.secrets))
    file_handler = logging.FileHandler(settings.log_dir / LOG_FILE_NAME, mode="a", encoding="utf-8")
    file_handler.setLevel(logging.INFO)
    console = logging.StreamHandler()
    console.setLevel(logging.WARNING)
    formatter = logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    formatter.converter = time.gmtime
    for handler in (file_handler, console):
        handler.setFormatter(formatter)
        handler.addFilter(masking)
        root.addHandler(handler)
    root.setLevel(logging.INFO)


class StateManager:
    """The runbook's ``StateManager``: settings from the environment, one connection per call."""

    def __init__(self, settings: BotSettings) -> None:
        self.settings = settings

    @classmethod
    def create(cls, profile: str | None = None, env_file: Path | None = None) -> StateManager:
        """Load the settings of ``profile`` (else ``PERPS_PROFILE``, else dev) from ``.env`` + environment."""
        from bot_v2.config import load_settings, merged_environment

        env = merged_environment(env_file if env_file is not None else Path(".env"))
        settings = load_settings(profile or env.get("PERPS_PROFILE") or "dev", env)
        _log_to_bot_log(settings)
        return cls(settings)

    @property
    def bot_id(self) -> str:
        return self.settings.bot_id

    async def get_keys_by_pattern(self, pattern: str) -> list[str]:
        """The bot's keys matching a glob (``expired:*``), sorted; read-only."""
        from bot_v2.orchestration.wiring import open_state, reader_settings

        async with open_state(reader_settings(self.settings)) as state:
            return await state.get_keys_by_pattern(pattern)

    async def get_state(self, key: str) -> Any | None:
        """The value of ``key`` (None if absent); read-only."""
        from bot_v2.orchestration.wiring import open_state, reader_settings

        async with open_state(reader_settings(self.settings)) as state:
            return await state.get_state(key)

    async def batch_delete_state(self, keys: list[str]) -> int:
        """Delete ``keys`` in one batch (every tier); return how many existed. Refused while the bot runs."""
        from bot_v2.orchestration.maintenance import batch_delete

        return await batch_delete(self.settings, keys)
