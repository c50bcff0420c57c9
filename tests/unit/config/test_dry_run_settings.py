"""Dry-run isolation: a paper bot is another bot (id, client-id prefix, data dir, state namespace)."""

from __future__ import annotations

import itertools
from pathlib import Path
from types import MappingProxyType

import pytest

from bot_v2.config import PROFILES, CliOverrides, Profile, load_settings
from bot_v2.config import settings as settings_module
from bot_v2.config.settings import BotSettings, paper_client_id_prefix
from bot_v2.errors import ConfigError
from bot_v2.state.settings import StateSettings

LIVE_DIR = ("var", "data", "perps_bot", "dev")


def _state_paths(state: StateSettings) -> set[Path]:
    return {state.data_dir, state.sqlite_path, state.cold_dir, state.journal_dir, state.spool_dir}


def _assert_isolated(live: BotSettings, paper: BotSettings) -> None:
    assert paper.dry_run and not live.dry_run
    assert paper.bot_id == f"{live.bot_id}-paper" == paper.state.bot_id
    assert paper.shadows_bot_id == live.bot_id and paper.is_paper
    assert live.shadows_bot_id is None and not live.is_paper
    assert paper.data_dir == live.data_dir / "paper" == paper.state.data_dir
    assert paper.log_dir == live.log_dir / "paper"
    assert {paper.events_path, paper.health_path}.isdisjoint({live.events_path, live.health_path})
    live_paths = _state_paths(live.state)
    for path in _state_paths(paper.state) - {paper.state.data_dir}:
        assert path not in live_paths
        assert not any(path.is_relative_to(p) or p.is_relative_to(path) for p in live_paths - {live.data_dir})
    assert not paper.client_id_prefix.startswith(live.client_id_prefix)
    assert not live.client_id_prefix.startswith(paper.client_id_prefix)
    # One exchange: the in-process simulator keeps the live bot's state dir.
    assert paper.simulator.state_dir == live.simulator.state_dir == live.data_dir / "simulator"


def test_dry_run_flag_runs_under_its_own_id_prefix_and_data_dir(tmp_path: Path) -> None:
    live = load_settings("dev", {}, root=tmp_path)
    paper = load_settings("dev", {}, CliOverrides(dry_run=True), root=tmp_path)
    _assert_isolated(live, paper)
    assert paper.bot_id == "perps-dev-paper"
    assert paper.client_id_prefix == "pbp-"
    assert paper.data_dir == tmp_path.joinpath(*LIVE_DIR, "paper")
    assert paper.state.sqlite_path == tmp_path.joinpath(*LIVE_DIR, "paper", "state", "warm.sqlite3")
    assert live.bot_id == "perps-dev" and live.client_id_prefix == "pb-"
    assert live.data_dir == tmp_path.joinpath(*LIVE_DIR)


def test_dry_run_from_the_environment(tmp_path: Path) -> None:
    env = {"PERPS_BOT_ID": "desk-a", "PERPS_DATA_DIR": str(tmp_path / "d"), "PERPS_CLIENT_ID_PREFIX": "da-"}
    live = load_settings("dev", env, root=tmp_path)
    paper = load_settings("dev", env | {"PERPS_DRY_RUN": "1"}, root=tmp_path)
    _assert_isolated(live, paper)
    assert (paper.bot_id, paper.client_id_prefix) == ("desk-a-paper", "dap-")
    assert paper.data_dir == tmp_path / "d" / "paper"
    assert paper.log_dir == tmp_path / "var" / "logs" / "paper"
    assert paper.simulator.state_dir == tmp_path / "d" / "simulator"


def test_live_flag_wins_over_a_dry_run_environment(tmp_path: Path) -> None:
    env = {"PERPS_DRY_RUN": "yes"}
    assert load_settings("dev", env, root=tmp_path).bot_id == "perps-dev-paper"
    live = load_settings("dev", env, CliOverrides(dry_run=False), root=tmp_path)
    assert (live.bot_id, live.client_id_prefix, live.shadows_bot_id) == ("perps-dev", "pb-", None)
    assert live.data_dir == tmp_path.joinpath(*LIVE_DIR)


def test_a_dry_run_profile_runs_as_a_paper_bot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    profiles = dict(PROFILES)
    profiles[Profile.DEV] = MappingProxyType(dict(profiles[Profile.DEV]) | {"dry_run": True})
    monkeypatch.setattr(settings_module, "PROFILES", MappingProxyType(profiles))
    paper = load_settings("dev", {}, root=tmp_path)
    assert paper.dry_run and paper.bot_id == "perps-dev-paper" and paper.shadows_bot_id == "perps-dev"
    live = load_settings("dev", {}, CliOverrides(dry_run=False), root=tmp_path)
    _assert_isolated(live, paper)


def test_bot_id_flag_is_the_live_id_the_paper_bot_shadows(tmp_path: Path) -> None:
    paper = load_settings("dev", {}, CliOverrides(dry_run=True, bot_id="Alpha"), root=tmp_path)
    assert (paper.bot_id, paper.shadows_bot_id) == ("alpha-paper", "alpha")


def test_service_backed_state_is_namespaced_by_the_paper_id(tmp_path: Path) -> None:
    env = {
        "REDIS_URL": "redis://localhost:6379/0",
        "DATABASE_URL": "postgresql://bot@localhost/bot",
        "S3_BUCKET": "perps",
    }
    live = load_settings("dev", env, root=tmp_path)
    paper = load_settings("dev", env, CliOverrides(dry_run=True), root=tmp_path)
    _assert_isolated(live, paper)
    # Same services, another namespace: Redis keys, PostgreSQL rows and S3 objects are all keyed by bot id.
    assert (paper.state.redis_url, paper.state.database_url) == (
        live.state.redis_url,
        live.state.database_url,
    )
    assert paper.state.bot_id == "perps-dev-paper" != live.state.bot_id


@pytest.mark.parametrize(
    ("overrides", "env", "field"),
    [
        (CliOverrides(dry_run=True, bot_id="a" * 27), {}, "--bot-id"),
        (CliOverrides(), {"PERPS_DRY_RUN": "1", "PERPS_BOT_ID": "b" * 32}, "PERPS_BOT_ID"),
    ],
)
def test_too_long_paper_bot_id_is_a_one_line_error(
    tmp_path: Path, overrides: CliOverrides, env: dict[str, str], field: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings("dev", env, overrides, root=tmp_path)
    message = str(info.value)
    assert message.startswith(f"{field}: ") and "-paper" in message and "at most 26 chars" in message
    assert "\n" not in info.value.one_line() and info.value.exit_code == 2


def test_longest_live_id_that_still_has_a_paper_bot(tmp_path: Path) -> None:
    paper = load_settings("dev", {}, CliOverrides(dry_run=True, bot_id="c" * 26), root=tmp_path)
    assert len(paper.bot_id) == 32
    assert load_settings("dev", {}, CliOverrides(bot_id="c" * 32), root=tmp_path).bot_id == "c" * 32


@pytest.mark.parametrize("dry_run", [False, True])
def test_live_bot_ids_may_not_end_in_paper(tmp_path: Path, dry_run: bool) -> None:
    with pytest.raises(ConfigError, match=r"^--bot-id: 'perps-dev-paper' ends in '-paper'"):
        load_settings("dev", {}, CliOverrides(dry_run=dry_run, bot_id="perps-dev-paper"), root=tmp_path)
    with pytest.raises(ConfigError, match=r"^PERPS_BOT_ID:"):
        load_settings("dev", {"PERPS_BOT_ID": "x-paper"}, CliOverrides(dry_run=dry_run), root=tmp_path)


@pytest.mark.parametrize(
    ("live", "paper"),
    [
        ("pb-", "pbp-"),
        ("a", "pa"),
        ("p", "xp"),
        ("ab", "apb"),
        ("abcdefg-", "abcdefgp"),
        ("abcdefgp", "abcdefgx"),
    ],
)
def test_paper_prefix_examples(live: str, paper: str) -> None:
    assert paper_client_id_prefix(live) == paper


def test_paper_prefix_never_collides_with_its_live_prefix() -> None:
    """Every prefix of up to 4 chars over an alphabet with the edge characters, plus 8-char ones."""
    alphabet = "ap-9"
    prefixes = ["".join(t) for n in range(1, 5) for t in itertools.product(alphabet, repeat=n)]
    prefixes += ["".join(t) + "pp-p" for t in itertools.product(alphabet, repeat=4)]
    for live in prefixes:
        paper = paper_client_id_prefix(live)
        assert settings_module._CLIENT_ID_PREFIX.fullmatch(paper), (live, paper)
        assert not paper.startswith(live) and not live.startswith(paper), (live, paper)


def test_paper_prefix_derives_from_the_configured_live_prefix(tmp_path: Path) -> None:
    env = {"PERPS_CLIENT_ID_PREFIX": "bot12345"}
    paper = load_settings("dev", env, CliOverrides(dry_run=True), root=tmp_path)
    assert paper.client_id_prefix == "bot1234p"
    assert load_settings("dev", env, root=tmp_path).client_id_prefix == "bot12345"
