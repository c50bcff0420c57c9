"""Start-up: unreachable services fail fast with the service named and the password masked."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from bot_v2.errors import ConfigError, StateUnavailableError
from bot_v2.state import StateManager
from bot_v2.state.settings import ColdBackend, HotBackend, StateSettings, WarmBackend
from tests.fixtures.services import free_port

SECRET = "hunter2-very-secret"


def _settings(tmp_path: Path, **kw: object) -> StateSettings:
    return replace(StateSettings(bot_id="boot", data_dir=tmp_path, connect_timeout_seconds=2.0), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "service"),
    [
        ({"hot_backend": HotBackend.REDIS, "redis_url": "redis://u:{pw}@127.0.0.1:{port}/0"}, "redis"),
        (
            {"warm_backend": WarmBackend.POSTGRES, "database_url": "postgresql://u:{pw}@127.0.0.1:{port}/db"},
            "postgresql",
        ),
        (
            {
                "cold_backend": ColdBackend.S3,
                "s3_endpoint_url": "http://127.0.0.1:{port}",
                "s3_bucket": "b-x",
            },
            "s3",
        ),
    ],
)
async def test_unreachable_service_is_named_masked_and_fast(
    tmp_path: Path, kw: dict[str, str], service: str, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    kw = {k: v.format(pw=SECRET, port=port) if isinstance(v, str) else v for k, v in kw.items()}
    settings = _settings(tmp_path, aws_access_key_id="AKIAEXAMPLE", aws_secret_access_key=SECRET, **kw)
    assert SECRET not in repr(settings)
    started = time.monotonic()
    with pytest.raises(StateUnavailableError) as info:
        await StateManager.create(settings)
    assert time.monotonic() - started < settings.connect_timeout_seconds * 2 + 1
    text = str(info.value) + repr(info.value.__cause__) + repr(info.value.__context__)
    assert service in text and str(port) in text
    assert SECRET not in text
    assert SECRET not in caplog.text


def test_real_backend_without_url_is_a_config_error(tmp_path: Path) -> None:
    from bot_v2.state.keys import KeySpace
    from bot_v2.state.tiers.factory import build_tiers

    for kw in (
        {"hot_backend": HotBackend.REDIS},
        {"warm_backend": WarmBackend.POSTGRES},
        {"cold_backend": ColdBackend.S3},
    ):
        with pytest.raises(ConfigError):
            build_tiers(_settings(tmp_path, **kw), KeySpace("boot"))


async def test_repr_of_manager_masks_urls(real_state_settings: StateSettings) -> None:
    async with await StateManager.create(real_state_settings) as sm:
        assert "StateManager(bot_id=" in repr(sm)
    masked = replace(
        real_state_settings,
        redis_url=f"redis://u:{SECRET}@h:1/0",
        database_url=f"postgresql://u:{SECRET}@h/d",
    )
    assert SECRET not in repr(masked)
