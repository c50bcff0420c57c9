"""Walk the runbook as an operator would: its greps, its Python snippets, its variables.

The greps run (the real ``grep``, and the runbook's awk average through bash) against the logs the failover
drills wrote (``drill_run``, shared with test_failover_drills, so the drills run once). The snippets are taken
from docs/RUNBOOK.md -- and, where this checkout sits beside the customer's runbook (``../shared/seeds``), from
that text verbatim too -- and executed with the venv's Python in a dev-profile working directory.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from bot_v2.config import load_settings
from bot_v2.errors import ConfigError
from bot_v2.state import StateCategory, StateManager, StateWrite
from tests.e2e.conftest import DRILLS, ROOT, DrillRun

pytestmark = pytest.mark.e2e

RUNBOOK = ROOT / "docs" / "RUNBOOK.md"
CUSTOMER_RUNBOOK = ROOT.parent / "shared" / "seeds" / "004_6e42ddf65df5e38f.txt"

#: Every grep of the customer's runbook, and the drill whose log must answer it. The two error greps
#: (``tail -n 100 ... | grep ERROR``, ``tail -f ... | grep -E "ERROR|CRITICAL"``) find the PostgreSQL drill's
#: outage line, logged at ERROR.
GREPS: dict[str, str] = {
    "ERROR": "postgres_failover_drill",
    "ERROR|CRITICAL": "postgres_failover_drill",
    "Redis recovery": "redis_failover_drill",
    "Recovered.*keys to Redis": "redis_failover_drill",
    "cache_hit_rate": "redis_failover_drill",
    "PnL": "redis_failover_drill",
    "order.*filled": "redis_failover_drill",
    "PostgreSQL recovery": "postgres_failover_drill",
    "data_loss_estimate": "postgres_failover_drill",
    "S3 recovery": "s3_failover_drill",
    "local storage fallback": "s3_failover_drill",
    "Trading engine recovery": "engine_crash_drill",
    "Cancelled.*pending orders": "engine_crash_drill",
    "position validation": "engine_crash_drill",
    "recovery.*completed": "redis_failover_drill",
    "recovery.*elapsed": "postgres_failover_drill",
}
#: the patterns the runbook greps with ``-E``
EXTENDED = {"ERROR|CRITICAL"}
#: a grep of the bot's log: at the start of a line, after a pipe or a backtick
_GREP_AT = r"(?:^\s*|\|\s*|`)grep\s+"
_GREP = re.compile(_GREP_AT + r'(?:(-E)\s+)?(?:"([^"]+)"|([^\s|`]+))')


def _texts() -> list[str]:
    texts = [RUNBOOK.read_text(encoding="utf-8")]
    if CUSTOMER_RUNBOOK.exists():
        texts.append(CUSTOMER_RUNBOOK.read_text(encoding="utf-8"))
    return texts


def _greps(text: str) -> list[tuple[bool, str]]:
    """(extended, pattern) of every grep of ``perps_bot.log`` in ``text``, in order."""
    lines = [line for line in text.splitlines() if "perps_bot.log" in line]
    found = [(m[1] == "-E", m[2] or m[3]) for line in lines for m in _GREP.finditer(line)]
    assert len(found) == sum(len(re.findall(_GREP_AT, line)) for line in lines)  # none left unparsed
    return found


def test_every_grep_of_the_runbook_is_covered() -> None:
    """A grep added to a runbook without a drill log answering it fails here."""
    if CUSTOMER_RUNBOOK.exists():  # kept unchanged: 18 greps of var/logs/perps_bot.log
        assert len(_greps(CUSTOMER_RUNBOOK.read_text(encoding="utf-8"))) == 18
    found = {grep for text in _texts() for grep in _greps(text)}
    # the restore snippet's line: test_runbook_snippet_runs_as_printed
    found.discard((False, "Restored from checkpoint"))
    assert found, "no grep found in the runbooks"
    assert {pattern for _, pattern in found} <= set(GREPS), sorted(found)
    assert {pattern for extended, pattern in found if extended} <= EXTENDED


@pytest.mark.parametrize("pattern", list(GREPS))
def test_runbook_grep_matches_a_drill_log(
    pattern: str, drill_run: Callable[[str], DrillRun], tmp_path: Path
) -> None:
    run = drill_run(GREPS[pattern])
    assert run.proc.returncode == 0, run.proc.stdout[-2000:]
    log = tmp_path / "perps_bot.log"
    log.write_text(run.log_text, encoding="utf-8")
    grep = ["grep", "-E"] if pattern in EXTENDED else ["grep"]
    proc = subprocess.run([*grep, pattern, str(log)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and proc.stdout.strip(), (
        f"grep {pattern!r}: nothing in {GREPS[pattern]}'s log"
    )


def test_runbook_awk_average_of_recovery_times(drill_run: Callable[[str], DrillRun], tmp_path: Path) -> None:
    """``grep "recovery.*elapsed" ... | awk '{sum+=$NF; count++} END {print sum/count "ms"}'`` on every drill."""
    log = tmp_path / "perps_bot.log"
    log.write_text("".join(drill_run(name).log_text for name in DRILLS), encoding="utf-8")
    line = f"""grep "recovery.*elapsed" {log} | awk '{{sum+=$NF; count++}} END {{print sum/count "ms"}}'"""
    proc = subprocess.run(["bash", "-c", line], capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    assert re.fullmatch(r"\d+(\.\d+)?(e[+-]\d+)?ms", proc.stdout.strip()), proc.stdout
    assert float(proc.stdout.strip()[:-2]) > 0
    count = subprocess.run(
        ["bash", "-c", f'grep "recovery.*completed" {log} | wc -l'],
        capture_output=True,
        text=True,
        check=True,
    )
    assert int(count.stdout) >= 4  # Redis, PostgreSQL, S3 and the engine crash at least


# --- snippets ------------------------------------------------------------------------------------------------


def _snippets() -> list[tuple[str, str]]:
    """(name, code) of every Python snippet that uses the runbook's state entry points."""
    found: list[tuple[str, str]] = []
    for n, text in enumerate(_texts()):
        where = "docs/RUNBOOK.md" if n == 0 else "customer runbook"
        for block in re.findall(r"```python\n(.*?)```", text, flags=re.S):
            if "bot_v2.state.state_manager" in block:
                found.append((f"{where} python block", block))
        for block in re.findall(r'python -c "\n(.*?)\n"\n', text, flags=re.S):
            if "bot_v2.state" in block:
                found.append((f"{where} python -c", block.replace('\\"', '"')))
    return found


@pytest.fixture
def operator_dir(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A working directory holding a dev-profile bot's state: one checkpoint and three ``expired:*`` keys."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PERPS_", "REDIS_", "DATABASE_", "S3_"))}
    env["PERPS_PROFILE"] = "dev"
    settings = load_settings("dev", env, root=tmp_path)

    async def seed() -> None:
        state = await StateManager.create(settings.state)
        try:
            await state.batch_write(
                [StateWrite(f"expired:{i}", {"i": i}, StateCategory.METADATA) for i in range(3)]
            )
            await state.checkpoints.create_checkpoint("manual")
        finally:
            await state.close()

    asyncio.run(seed())
    return tmp_path, env


def _python(code: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("name_code", _snippets(), ids=lambda nc: nc[0])
def test_runbook_snippet_runs_as_printed(
    name_code: tuple[str, str], operator_dir: tuple[Path, dict[str, str]]
) -> None:
    _name, code = name_code
    cwd, env = operator_dir
    if "'checkpoint_id'" in code:  # the customer's placeholder: refused in one line, then a real id restores
        printed = _python(code, cwd, env)
        assert printed.returncode == 0 and "Restoration: FAILED" in printed.stdout, printed.stderr
        assert "checkpoint id 'checkpoint_id' is not valid" in printed.stderr
        assert "Traceback" not in printed.stderr
        code = code.replace("'checkpoint_id'", "'latest'")
    proc = _python(code, cwd, env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr
    log = (cwd / "var" / "logs" / "perps_bot.log").read_text(encoding="utf-8")
    if "restore" in code.lower():
        assert re.search(r"SUCCESS|restored", proc.stdout), proc.stdout
        assert "Restored from checkpoint " in log
    else:
        assert re.search(r"\b3\b", proc.stdout), proc.stdout  # the three expired:* keys


def test_batch_delete_is_refused_while_a_bot_holds_the_lease(
    operator_dir: tuple[Path, dict[str, str]],
) -> None:
    from bot_v2.errors import LeaseHeldError
    from bot_v2.orchestration.lease import LeaseKeeper, new_claim
    from bot_v2.state.state_manager import StateManager as RunbookStateManager

    cwd, env = operator_dir
    facade = RunbookStateManager(load_settings("dev", env, root=cwd))

    async def scenario() -> str:
        state = await StateManager.create(facade.settings.state)
        keeper = LeaseKeeper(state, facade.settings.lease, new_claim("primary"), bot_id=facade.bot_id)
        await keeper.acquire()
        renewal = asyncio.get_running_loop().create_task(keeper.run())  # a running bot renews its lease
        try:
            with pytest.raises(LeaseHeldError) as caught:
                await facade.batch_delete_state(["expired:0"])
            return caught.value.one_line()
        finally:
            renewal.cancel()
            await asyncio.gather(renewal, return_exceptions=True)
            await keeper.release()
            await state.close()

    text = asyncio.run(scenario())
    assert "batch delete refused" in text and "stop the bot first" in text


# --- variables -----------------------------------------------------------------------------------------------


def test_runbook_variables_take_effect(tmp_path: Path) -> None:
    base = {"PERPS_DATA_DIR": str(tmp_path)}
    settings = load_settings(
        "dev",
        base
        | {
            "CHECKPOINT_RETENTION_COUNT": "2",
            "CHECKPOINT_ENABLE_COMPRESSION": "1",
            "STATE_BATCH_SIZE": "1000",
            "RISK_KILL_SWITCH_ENABLED": "1",
            "RISK_REDUCE_ONLY_MODE": "1",
            "COINBASE_ENABLE_DERIVATIVES": "1",
        },
        root=tmp_path,
    )
    assert settings.state.checkpoint_retention == 2
    assert settings.state.hot_restore_page_size == 1000 and settings.state.coherence_page_size == 1000
    assert settings.risk.kill_switch_enabled and settings.risk.reduce_only_mode
    assert settings.enable_derivatives
    with pytest.raises(ConfigError, match="always zlib-compressed"):
        load_settings("dev", base | {"CHECKPOINT_ENABLE_COMPRESSION": "0"}, root=tmp_path)
    with pytest.raises(ConfigError, match="CHECKPOINT_RETENTION_COUNT"):
        load_settings(
            "dev", base | {"CHECKPOINT_RETENTION_COUNT": "2", "CHECKPOINT_RETENTION": "5"}, root=tmp_path
        )

    async def prune() -> int:  # CHECKPOINT_RETENTION_COUNT=2: three checkpoints, two kept
        state = await StateManager.create(settings.state)
        try:
            for _ in range(3):
                await state.checkpoints.create_checkpoint("manual")
            return len(await state.checkpoints.list_checkpoints())
        finally:
            await state.close()

    assert asyncio.run(prune()) == 2


def test_runbook_exports_are_known_variables() -> None:
    """Every ``export NAME=...`` of the runbooks is a variable the bot reads (or refuses by name)."""
    from bot_v2.config import ENV_VARS
    from bot_v2.risk import RISK_ENV_VARS

    known = set(ENV_VARS) | set(RISK_ENV_VARS)
    exported = {m for text in _texts() for m in re.findall(r"export ([A-Z][A-Z0-9_]+)=", text)}
    assert exported and exported <= known, sorted(exported - known)
