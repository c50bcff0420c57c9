"""Compatibility facade: ``CheckpointRestoration`` as the customer's runbook prints it.

    restorer = CheckpointRestoration(StateManager.create())       # bot_v2.state.state_manager
    success = await restorer.restore_from_checkpoint("checkpoint_id")

It is ``perps-bot --restore-checkpoint <id>`` (``orchestration.maintenance.restore_checkpoint``): the checkpoint
is verified before anything is written, the restore holds the bot id's lease (refused while the bot runs) and
logs ``Restored from checkpoint <id>: ...``. ``restore_from_checkpoint`` returns False instead of raising for
the failures an operator acts on (unknown id, a running bot, a corrupt checkpoint, a tier down) and logs the
reason as one ERROR line; ``"latest"`` picks the newest checkpoint.
"""

from __future__ import annotations

import logging

from bot_v2.errors import PerpsBotError
from bot_v2.state.state_manager import StateManager

logger = logging.getLogger(__name__)


class CheckpointRestoration:
    """Restores one of the bot's checkpoints (the runbook's "Force Checkpoint Restoration")."""

    def __init__(self, state_manager: StateManager) -> None:
        self.state_manager = state_manager

    async def restore_from_checkpoint(self, checkpoint_id: str, *, verify_only: bool = False) -> bool:
        """Verify and restore ``checkpoint_id``; True when it was restored (or verified, with ``verify_only``)."""
        from bot_v2.orchestration.maintenance import restore_checkpoint

        try:
            await restore_checkpoint(self.state_manager.settings, checkpoint_id, verify_only=verify_only)
        except PerpsBotError as exc:
            logger.error("restore_from_checkpoint(%r) failed: %s", checkpoint_id, exc.one_line())
            return False
        return True
