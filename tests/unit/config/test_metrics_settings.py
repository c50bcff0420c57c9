"""Metrics on by default: 127.0.0.1 at the profile's port (a dry run + 10); METRICS_PORT / METRICS_HOST."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot_v2.config import CliOverrides, load_settings
from bot_v2.config.profiles import PROFILES, Profile
from bot_v2.config.settings import PAPER_METRICS_PORT_OFFSET
from bot_v2.errors import ConfigError

REAL = {
    "REDIS_URL": "redis://localhost:6379/0",
    "DATABASE_URL": "postgresql://bot@localhost/bot",
    "S3_BUCKET": "perps",
    "COINBASE_API_KEY": "organizations/o/apiKeys/KEYID1234",
    "COINBASE_API_SECRET": "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIabcdef\n-----END EC PRIVATE KEY-----",
}
PORTS = {Profile.PROD: 9102, Profile.CANARY: 9103, Profile.SPOT: 9104, Profile.DEV: 9105}


@pytest.mark.parametrize("profile", list(Profile))
def test_each_profile_serves_on_its_own_port_on_localhost(profile: Profile, tmp_path: Path) -> None:
    settings = load_settings(profile, {} if profile is Profile.DEV else REAL, root=tmp_path)
    assert settings.metrics_port == PORTS[profile]
    assert settings.metrics_host == "127.0.0.1"
    assert not settings.metrics_port_explicit  # busy: a warning, not a refusal
    paper = load_settings(
        profile, {} if profile is Profile.DEV else REAL, CliOverrides(dry_run=True), root=tmp_path
    )
    assert paper.metrics_port == PORTS[profile] + PAPER_METRICS_PORT_OFFSET


def test_no_two_defaults_collide() -> None:
    ports = [int(p["metrics_port"]) for p in PROFILES.values()]
    every = ports + [p + PAPER_METRICS_PORT_OFFSET for p in ports]
    assert len(set(every)) == len(every)


def test_metrics_port_sets_the_port_and_zero_turns_metrics_off(tmp_path: Path) -> None:
    chosen = load_settings("dev", {"METRICS_PORT": "9200", "METRICS_HOST": "0.0.0.0"}, root=tmp_path)
    assert (chosen.metrics_port, chosen.metrics_host, chosen.metrics_port_explicit) == (9200, "0.0.0.0", True)
    # an explicit port is the operator's: a dry run uses it as given
    assert (
        load_settings("dev", {"METRICS_PORT": "9200", "PERPS_DRY_RUN": "1"}, root=tmp_path).metrics_port
        == 9200
    )
    assert load_settings("dev", {"METRICS_PORT": "0"}, root=tmp_path).metrics_port is None
    assert load_settings("dev", {"METRICS_PORT": ""}, root=tmp_path).metrics_port == 9105  # empty = unset


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"METRICS_PORT": "abc"}, "METRICS_PORT: expected an integer"),
        ({"METRICS_PORT": "-1"}, "METRICS_PORT: must be >= 0"),
        ({"METRICS_PORT": "70000"}, "METRICS_PORT: must be <= 65535"),
        ({"METRICS_HOST": "127.0.0.1/8"}, "METRICS_HOST: expected an address"),
    ],
)
def test_bad_metrics_settings_name_the_variable(env: dict[str, str], message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings("dev", env, root=tmp_path)
