"""How to reach Coinbase Advanced Trade: the frozen connection settings and the SDK client built from them.

The SDK reads ``COINBASE_API_KEY``/``COINBASE_API_SECRET`` as default arguments at import time, builds every
URL as ``https://{base_url}{path}`` and has no timeout by default. So credentials are always passed
explicitly, the base URL must be a bare ``host[:port]``, and a timeout is always set.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coinbase import jwt_generator
from coinbase.rest import RESTClient

from bot_v2.brokerages.coinbase.errors_map import sdk_errors
from bot_v2.errors import ConfigError, MissingCredentialsError
from bot_v2.monitoring.masking import SecretMasker, mask_secret

__all__ = ["CoinbaseConnection", "build_client"]

DEFAULT_HOST = "api.coinbase.com"


@dataclass(frozen=True)
class CoinbaseConnection:
    """Settings for one Coinbase account connection. Secrets are masked in ``repr``.

    ``base_url`` is a bare ``host[:port]`` (the SDK prepends ``https://``). Give either ``api_key`` and
    ``api_secret`` (a PEM EC key or base64 Ed25519 key) or ``key_file`` (a CDP JSON key file), not both.
    ``ca_file`` makes the session trust only that CA bundle (and ignore ``REQUESTS_CA_BUNDLE``); the WebSocket
    feed at ``ws_url`` (None: no feed, REST quotes every cycle) is verified against it too.
    ``ws_stale_seconds``: a feed silent for longer is dropped and resubscribed (REST meanwhile).
    """

    base_url: str = DEFAULT_HOST
    api_key: str | None = None
    api_secret: str | None = None
    key_file: Path | None = None
    ca_file: Path | None = None
    timeout_seconds: float = 10.0
    enable_derivatives: bool = False
    max_workers: int = 4
    ws_url: str | None = None
    ws_stale_seconds: float = 5.0

    def __post_init__(self) -> None:
        if "://" in self.base_url or "/" in self.base_url or not self.base_url:
            raise ConfigError(
                f"base_url must be a bare host[:port] such as 'api.coinbase.com', got {self.base_url!r}"
            )
        if self.timeout_seconds <= 0:
            raise ConfigError(f"timeout_seconds must be positive, got {self.timeout_seconds}")
        if self.max_workers < 1:
            raise ConfigError(f"max_workers must be at least 1, got {self.max_workers}")
        if self.ws_url is not None and not self.ws_url.startswith(("wss://", "ws://")):
            raise ConfigError(f"ws_url must be a wss:// (or ws://) URL, got {self.ws_url!r}")
        if self.ws_stale_seconds <= 0:
            raise ConfigError(f"ws_stale_seconds must be positive, got {self.ws_stale_seconds}")

    def __repr__(self) -> str:
        key = mask_secret(self.api_key) if self.api_key is not None else None
        secret = "****" if self.api_secret is not None else None
        return (
            f"CoinbaseConnection(base_url={self.base_url!r}, api_key={key!r}, api_secret={secret!r}, "
            f"key_file={self.key_file!r}, ca_file={self.ca_file!r}, "
            f"timeout_seconds={self.timeout_seconds!r}, "
            f"enable_derivatives={self.enable_derivatives!r}, max_workers={self.max_workers!r}, "
            f"ws_url={self.ws_url!r}, ws_stale_seconds={self.ws_stale_seconds!r})"
        )

    __str__ = __repr__

    def masker(self) -> SecretMasker:
        """Return a masker that hides this connection's key and secret in any text."""
        return SecretMasker(s for s in (self.api_key, self.api_secret) if s)


def build_client(connection: CoinbaseConnection) -> Any:
    """Build the SDK ``RESTClient``: explicit credentials, a timeout, rate-limit headers, the CA if given.

    Raise ``MissingCredentialsError`` when neither key+secret nor a key file is given, ``ConfigError`` for
    both or a half pair, and ``AuthenticationError`` when the SDK cannot load the key (checked now by signing
    one JWT, not on the first request).
    """
    has_pair = connection.api_key is not None or connection.api_secret is not None
    if connection.key_file is not None and has_pair:
        raise ConfigError("give either api_key+api_secret or key_file, not both")
    if connection.key_file is None:
        if not connection.api_key and not connection.api_secret:
            raise MissingCredentialsError("no Coinbase credentials: set api_key and api_secret, or key_file")
        if not connection.api_key or not connection.api_secret:
            raise MissingCredentialsError("Coinbase credentials need both api_key and api_secret")
    masker = connection.masker()
    with sdk_errors("load credentials", masker):
        client = RESTClient(
            api_key=connection.api_key,
            api_secret=connection.api_secret,
            key_file=str(connection.key_file) if connection.key_file is not None else None,
            base_url=connection.base_url,
            timeout=connection.timeout_seconds,
            verbose=False,
            rate_limit_headers=True,
        )
        if connection.key_file is not None:
            masker.add(client.api_secret)
        # Sign once now so a malformed key fails at start-up, not on the first order.
        jwt_generator.build_rest_jwt(f"GET {connection.base_url}/", client.api_key, client.api_secret)
    if connection.ca_file is not None:
        if not connection.ca_file.is_file():
            raise ConfigError(f"ca_file {str(connection.ca_file)!r} does not exist")
        client.session.trust_env = False
        client.session.verify = str(connection.ca_file)
    return client
