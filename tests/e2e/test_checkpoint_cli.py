"""--checkpoint, --list-checkpoints and --restore-checkpoint as subprocesses on the dev profile's embedded state."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from bot_v2.config import load_settings
from bot_v2.orchestration import keys
from bot_v2.state import StateManager
from tests.e2e.test_cli_commands import BOT, assert_one_line_error, run_cli
from tests.helpers import eventually

pytestmark = pytest.mark.e2e


def _control(tmp_path: Path) -> Any:
    """The control key as stored (read directly, as the bot would), or None."""

    async def read() -> Any:
        settings = load_settings("dev", {"PERPS_DATA_DIR": str(tmp_path / "data")}, root=tmp_path)
        state = await StateManager.create(settings.state)
        try:
            return await state.get_state(keys.CONTROL_KEY)
        finally:
            await state.close()

    return asyncio.run(read())


def _checkpoints(tmp_path: Path) -> list[dict[str, Any]]:
    listed = run_cli(tmp_path, "--list-checkpoints", "--json")
    assert listed.returncode == 0, listed.stderr
    result: list[dict[str, Any]] = json.loads(listed.stdout)
    return result


def test_checkpoint_list_verify_and_restore(tmp_path: Path) -> None:
    assert run_cli(tmp_path, "--dev-fast").returncode == 0  # leaves its shutdown checkpoint
    taken = run_cli(tmp_path, "--checkpoint", "--json")
    assert taken.returncode == 0, taken.stderr
    info = json.loads(taken.stdout)
    assert info["reason"] == "manual" and info["key_count"] > 0

    listed = _checkpoints(tmp_path)
    assert [c["reason"] for c in listed] == ["manual", "shutdown"]
    assert listed[0]["checkpoint_id"] == info["checkpoint_id"] and listed[0]["sha256"] == info["sha256"]
    table = run_cli(tmp_path, "--list-checkpoints")
    assert (
        table.returncode == 0
        and info["checkpoint_id"] in table.stdout
        and info["sha256"][:12] in table.stdout
    )

    assert run_cli(tmp_path, "--kill-switch", "on").returncode == 0  # state changed after the checkpoint
    assert _control(tmp_path)["kill_switch"] is True

    verified = run_cli(tmp_path, "--restore-checkpoint", "latest", "--verify-only")
    assert verified.returncode == 0, verified.stderr
    assert "nothing written" in verified.stdout and info["checkpoint_id"] in verified.stdout
    assert _control(tmp_path)["kill_switch"] is True  # --verify-only wrote nothing

    restored = run_cli(tmp_path, "--restore-checkpoint", "latest")
    assert restored.returncode == 0, restored.stderr
    assert "Checkpoint restored" in restored.stdout and "reconciles with the exchange" in restored.stdout
    assert _control(tmp_path) is None  # back to before --kill-switch on: no control key at all
    events = [json.loads(line) for line in (tmp_path / "data" / "events.jsonl").read_text().splitlines()]
    done = [e for e in events if e["type"] == "checkpoint_restored"]
    assert (
        len(done) == 1 and done[0]["keys_deleted"] == 1 and done[0]["checkpoint_id"] == info["checkpoint_id"]
    )

    assert_one_line_error(run_cli(tmp_path, "--restore-checkpoint", "bogus"), 2, "not valid")
    assert_one_line_error(run_cli(tmp_path, "--verify-only"), 2, "--restore-checkpoint")


@contextmanager
def _running_bot(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PERPS_", "COINBASE_", "RISK_"))}
    for name in ("REDIS_URL", "DATABASE_URL", "S3_ENDPOINT_URL", "S3_BUCKET"):
        env.pop(name, None)
    env |= {
        "PERPS_DATA_DIR": str(tmp_path / "data"),
        "PERPS_LOG_DIR": str(tmp_path / "logs"),
        "SIM_TICK_SECONDS": "0.05",
    }
    process = subprocess.Popen(
        [*BOT, "--interval", "0.2"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        eventually(lambda: (tmp_path / "data" / "health.json").exists(), timeout=20)
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def test_restore_is_refused_while_a_bot_runs(tmp_path: Path) -> None:
    with _running_bot(tmp_path) as bot:
        refused = run_cli(tmp_path, "--restore-checkpoint", "latest")
        assert_one_line_error(refused, 2, "--restore-checkpoint refused: bot 'perps-dev' is already running")
        assert f"pid {bot.pid}, epoch" in refused.stderr  # the lease names its holder
        # the read-only paths work beside the bot: a checkpoint, and a verification
        assert run_cli(tmp_path, "--checkpoint").returncode == 0
        assert run_cli(tmp_path, "--restore-checkpoint", "latest", "--verify-only").returncode == 0
        bot.send_signal(signal.SIGTERM)
        assert bot.wait(timeout=15) == 0
    assert run_cli(tmp_path, "--restore-checkpoint", "latest").returncode == 0  # stopped: allowed


def test_a_crashed_bots_marker_does_not_block_a_restore(tmp_path: Path) -> None:
    with _running_bot(tmp_path) as bot:
        eventually(lambda: _checkpoints(tmp_path), timeout=10)  # its first cycle's periodic checkpoint
        bot.send_signal(signal.SIGKILL)
        bot.wait(timeout=10)
    restored = run_cli(tmp_path, "--restore-checkpoint", "latest")
    assert restored.returncode == 0, restored.stderr
    # a checkpoint taken while the bot ran holds its marker: the next start recovers as after a crash
    assert "unclean stop" in restored.stdout


def _flip_last_byte(blob: bytes) -> bytes:
    return blob[:-1] + bytes([blob[-1] ^ 0xFF])


def test_a_corrupted_checkpoint_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    assert run_cli(tmp_path, "--kill-switch", "on").returncode == 0
    taken = run_cli(tmp_path, "--checkpoint", "--json")
    assert taken.returncode == 0, taken.stderr
    checkpoint_id = json.loads(taken.stdout)["checkpoint_id"]
    assert run_cli(tmp_path, "--kill-switch", "off").returncode == 0

    # restore reads the WARM copy (COLD only when WARM has no row): corrupt both
    (cold,) = (tmp_path / "data" / "state" / "cold").rglob(f"{checkpoint_id}.ckpt")
    cold.write_bytes(_flip_last_byte(cold.read_bytes()))
    with sqlite3.connect(tmp_path / "data" / "state" / "warm.sqlite3") as db:
        (blob,) = db.execute(
            "SELECT blob FROM state_checkpoints WHERE checkpoint_id = ?", (checkpoint_id,)
        ).fetchone()
        db.execute(
            "UPDATE state_checkpoints SET blob = ? WHERE checkpoint_id = ?",
            (_flip_last_byte(blob), checkpoint_id),
        )
    db.close()

    for args in (("--verify-only",), ()):
        result = run_cli(tmp_path, "--restore-checkpoint", checkpoint_id, *args)
        assert_one_line_error(
            result, 1, f"StateIntegrityError: checkpoint '{checkpoint_id}': checksum mismatch"
        )
    assert _control(tmp_path)["kill_switch"] is False  # nothing written

    with sqlite3.connect(
        tmp_path / "data" / "state" / "warm.sqlite3"
    ) as db:  # WARM loses the row: COLD is read
        db.execute("DELETE FROM state_checkpoints WHERE checkpoint_id = ?", (checkpoint_id,))
    db.close()
    assert_one_line_error(run_cli(tmp_path, "--restore-checkpoint", checkpoint_id), 1, "checksum mismatch")
    assert _control(tmp_path)["kill_switch"] is False


def test_help_documents_the_checkpoint_flags(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "--help")
    assert result.returncode == 0
    for flag in ("--checkpoint", "--list-checkpoints", "--restore-checkpoint", "--verify-only"):
        assert flag in result.stdout, flag
    assert "--restore-checkpoint latest --verify-only" in result.stdout
