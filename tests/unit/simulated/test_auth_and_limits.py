"""JWT verification rules and the token bucket, without a server."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from bot_v2.brokerages.simulated.auth import AuthError, KeyRegistry, load_or_create_key
from bot_v2.brokerages.simulated.server import TokenBucket

HOST = "127.0.0.1:8443"
PATH = "/api/v3/brokerage/accounts"


def _token(key: ec.EllipticCurvePrivateKey, kid: str, **claims: object) -> str:
    now = int(time.time())
    body: dict[str, object] = {
        "sub": kid,
        "iss": "cdp",
        "nbf": now,
        "exp": now + 120,
        "uri": f"GET {HOST}{PATH}",
    }
    body.update(claims)
    return jwt.encode(body, key, algorithm="ES256", headers={"kid": kid, "nonce": "abc"})


@pytest.fixture
def registry_and_key(tmp_path: Path) -> tuple[KeyRegistry, ec.EllipticCurvePrivateKey, str]:
    api_key = load_or_create_key(tmp_path / "key.json")
    assert load_or_create_key(tmp_path / "key.json") == api_key  # reused, not regenerated
    registry = KeyRegistry()
    registry.register(api_key.name, api_key.public_pem())
    from cryptography.hazmat.primitives import serialization

    private = serialization.load_pem_private_key(api_key.private_pem.encode(), password=None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    return registry, private, api_key.name


def test_a_well_formed_token_is_accepted(
    registry_and_key: tuple[KeyRegistry, ec.EllipticCurvePrivateKey, str],
) -> None:
    registry, key, kid = registry_and_key
    assert registry.verify(f"Bearer {_token(key, kid)}", "GET", (HOST,), PATH) == kid


@pytest.mark.parametrize(
    "claims",
    [
        {"uri": f"POST {HOST}{PATH}"},
        {"uri": f"GET 127.0.0.1:9999{PATH}"},
        {"iss": "coinbase-cloud"},
        {"sub": "someone-else"},
        {"exp": -60, "nbf": -180},  # seconds from now, computed when the test runs (expired)
        {"nbf": 600, "exp": 720},  # not yet valid
    ],
)
def test_tokens_with_wrong_claims_are_refused(
    registry_and_key: tuple[KeyRegistry, ec.EllipticCurvePrivateKey, str], claims: dict[str, object]
) -> None:
    registry, key, kid = registry_and_key
    now = int(time.time())
    claims = {k: now + v if k in ("exp", "nbf") and isinstance(v, int) else v for k, v in claims.items()}
    with pytest.raises(AuthError):
        registry.verify(f"Bearer {_token(key, kid, **claims)}", "GET", (HOST,), PATH)


def test_unknown_keys_and_garbage_are_refused(
    registry_and_key: tuple[KeyRegistry, ec.EllipticCurvePrivateKey, str],
) -> None:
    registry, _, kid = registry_and_key
    stranger = ec.generate_private_key(ec.SECP256R1())
    for header in (
        None,
        "Basic xyz",
        "Bearer not-a-jwt",
        f"Bearer {_token(stranger, kid)}",
        f"Bearer {_token(stranger, 'unregistered')}",
    ):
        with pytest.raises(AuthError):
            registry.verify(header, "GET", (HOST,), PATH)


def test_token_bucket_refuses_past_capacity_and_refills() -> None:
    bucket = TokenBucket(5)
    results = [bucket.take("k", 100.0) for _ in range(6)]
    assert [ok for ok, _ in results] == [True] * 5 + [False]
    assert results[0][1]["x-ratelimit-limit"] == "5"
    assert results[4][1]["x-ratelimit-remaining"] == "0"
    assert bucket.take("other", 100.0)[0]  # buckets are per caller
    assert bucket.take("k", 100.3)[0]  # 0.3 s refills 1.5 tokens
    assert TokenBucket(None).take("k", 0.0) == (True, {})
