"""Credentials are explicit, validated at construction, and never printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot_v2.brokerages.coinbase import CoinbaseBroker, CoinbaseConnection
from bot_v2.brokerages.coinbase.connection import build_client
from bot_v2.errors import AuthenticationError, ConfigError, MissingCredentialsError
from tests.unit.coinbase.conftest import API_KEY, HOST, PEM


def test_repr_masks_key_and_secret() -> None:
    conn = CoinbaseConnection(base_url=HOST, api_key=API_KEY, api_secret=PEM)
    for text in (repr(conn), str(conn), repr(CoinbaseBroker(conn))):
        assert API_KEY not in text and "PRIVATE KEY" not in text and PEM[40:60] not in text
        assert "****ABCD" in text and "api_secret='****'" in text


@pytest.mark.parametrize(
    "kwargs,error",
    [
        ({}, MissingCredentialsError),
        ({"api_key": API_KEY}, MissingCredentialsError),
        ({"api_secret": PEM}, MissingCredentialsError),
        ({"api_key": "", "api_secret": ""}, MissingCredentialsError),
        ({"api_key": API_KEY, "api_secret": PEM, "key_file": Path("k.json")}, ConfigError),
    ],
)
def test_credentials_must_be_a_full_pair_or_a_key_file(
    kwargs: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        CoinbaseBroker(CoinbaseConnection(base_url=HOST, **kwargs))  # type: ignore[arg-type]


def test_environment_credentials_are_never_picked_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COINBASE_API_KEY", API_KEY)
    monkeypatch.setenv("COINBASE_API_SECRET", PEM)
    with pytest.raises(MissingCredentialsError):
        CoinbaseBroker(CoinbaseConnection(base_url=HOST))


def test_an_unloadable_secret_fails_at_construction_without_leaking_it() -> None:
    secret = (
        "-----BEGIN EC PRIVATE KEY-----\nTm90QUtleUF0QWxsVGhpc0lzR2FyYmFnZQ==\n-----END EC PRIVATE KEY-----\n"
    )
    with pytest.raises(AuthenticationError) as caught:
        CoinbaseBroker(CoinbaseConnection(base_url=HOST, api_key=API_KEY, api_secret=secret))
    text = str(caught.value)
    assert "Tm90QUtle" not in text and API_KEY not in text and "\n" not in text


def test_key_file_is_an_alternative(tmp_path: Path) -> None:
    key_file = tmp_path / "cdp_api_key.json"
    key_file.write_text(json.dumps({"name": API_KEY, "privateKey": PEM}))
    client = build_client(CoinbaseConnection(base_url=HOST, key_file=key_file))
    assert client.api_key == API_KEY and client.is_authenticated


@pytest.mark.parametrize("content", [None, "not json", json.dumps({"name": API_KEY})])
def test_bad_key_files_are_refused(tmp_path: Path, content: str | None) -> None:
    key_file = tmp_path / "key.json"
    if content is not None:
        key_file.write_text(content)
    with pytest.raises((ConfigError, AuthenticationError)) as caught:
        CoinbaseBroker(CoinbaseConnection(base_url=HOST, key_file=key_file))
    assert "\n" not in str(caught.value)


def test_client_has_timeout_rate_limit_headers_and_the_ca(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    conn = CoinbaseConnection(
        base_url="127.0.0.1:8443", api_key=API_KEY, api_secret=PEM, ca_file=ca, timeout_seconds=3
    )
    client = build_client(conn)
    assert client.timeout == 3 and client.rate_limit_headers is True and client.base_url == "127.0.0.1:8443"
    assert client.session.trust_env is False and client.session.verify == str(ca)
    with pytest.raises(ConfigError, match="ca_file"):
        build_client(
            CoinbaseConnection(base_url=HOST, api_key=API_KEY, api_secret=PEM, ca_file=tmp_path / "x.pem")
        )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base_url": "https://api.coinbase.com"},
        {"base_url": "api.coinbase.com/api"},
        {"base_url": ""},
        {"timeout_seconds": 0},
        {"max_workers": 0},
    ],
)
def test_connection_settings_are_validated(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        CoinbaseConnection(**kwargs)  # type: ignore[arg-type]
