"""Build the three tiers selected by ``StateSettings`` (no connections are opened here)."""

from __future__ import annotations

from bot_v2.errors import ConfigError
from bot_v2.state.keys import KeySpace
from bot_v2.state.settings import ColdBackend, HotBackend, StateSettings, WarmBackend
from bot_v2.state.tiers.cold import ColdTier
from bot_v2.state.tiers.hot import HotTier
from bot_v2.state.tiers.warm import WarmTier


def build_tiers(settings: StateSettings, keyspace: KeySpace) -> tuple[HotTier, WarmTier, ColdTier]:
    """Return (hot, warm, cold) backends for ``settings``; a real backend without its URL is a ConfigError."""
    timeout = settings.connect_timeout_seconds
    hot: HotTier
    warm: WarmTier
    cold: ColdTier
    if settings.hot_backend == HotBackend.REDIS:
        if not settings.redis_url and not settings.redis_sentinels:
            raise ConfigError("state hot_backend=redis needs redis_url (REDIS_URL) or REDIS_SENTINELS")
        from bot_v2.state.tiers.redis_connect import RedisTarget
        from bot_v2.state.tiers.redis_hot import RedisHotTier

        target = RedisTarget(
            url=settings.redis_url,
            sentinels=settings.redis_sentinels,
            master=settings.redis_sentinel_master,
            password=settings.redis_password,
            sentinel_password=settings.redis_sentinel_password,
            db=settings.redis_db,
        )
        hot = RedisHotTier(
            target, keyspace, timeout, command_timeout_seconds=settings.hot_command_timeout_seconds
        )
    else:
        from bot_v2.state.tiers.memory_hot import MemoryHotTier

        hot = MemoryHotTier()
    if settings.warm_backend == WarmBackend.POSTGRES:
        if not settings.database_url:
            raise ConfigError("state warm_backend=postgres needs database_url (DATABASE_URL)")
        from bot_v2.state.tiers.postgres_warm import PostgresWarmTier

        warm = PostgresWarmTier(
            settings.database_url,
            keyspace,
            timeout,
            command_timeout_seconds=settings.warm_command_timeout_seconds,
            bulk_timeout_seconds=settings.warm_bulk_timeout_seconds,
        )
    else:
        from bot_v2.state.tiers.sqlite_warm import SqliteWarmTier

        warm = SqliteWarmTier(settings.sqlite_path, keyspace, timeout)
    if settings.cold_backend == ColdBackend.S3:
        if not settings.s3_bucket:
            raise ConfigError("state cold_backend=s3 needs s3_bucket (S3_BUCKET)")
        from bot_v2.state.tiers.s3_cold import S3ColdTier

        cold = S3ColdTier(
            settings.s3_bucket,
            keyspace,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.aws_access_key_id,
            secret_access_key=settings.aws_secret_access_key,
            connect_timeout_seconds=timeout,
        )
    else:
        from bot_v2.state.tiers.directory_cold import DirectoryColdTier

        cold = DirectoryColdTier(settings.cold_dir, keyspace)
    return hot, warm, cold
