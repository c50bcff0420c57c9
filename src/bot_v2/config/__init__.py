"""Configuration: profiles (dev, canary, spot, prod) merged with .env, environment and CLI flags."""

from bot_v2.config.envfile import merged_environment, read_env_file
from bot_v2.config.profiles import PROFILES, BrokerKind, Profile
from bot_v2.config.settings import (
    ENV_VARS,
    BotSettings,
    CliOverrides,
    ReconcileMismatchAction,
    ShutdownOrderPolicy,
    SimulatorSettings,
    load_settings,
)

__all__ = [
    "ENV_VARS",
    "PROFILES",
    "BotSettings",
    "BrokerKind",
    "CliOverrides",
    "Profile",
    "ReconcileMismatchAction",
    "ShutdownOrderPolicy",
    "SimulatorSettings",
    "load_settings",
    "merged_environment",
    "read_env_file",
]
