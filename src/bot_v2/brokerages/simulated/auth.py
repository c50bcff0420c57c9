"""CDP JWT verification (ES256 / EdDSA) against a registry of test keys, and the default key file."""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

__all__ = ["ApiKey", "AuthError", "KeyRegistry", "load_or_create_key"]

PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
LEEWAY_SECONDS = 5


class AuthError(Exception):
    """The request's credentials are missing or invalid (answered 401 "Unauthorized")."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A CDP key: ``name`` is the key id, ``private_pem`` the secret as the SDK takes it."""

    name: str
    private_pem: str

    def public_pem(self) -> str:
        key = serialization.load_pem_private_key(self.private_pem.encode(), password=None)
        return (
            key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )

    def __repr__(self) -> str:
        return f"ApiKey(name={self.name!r}, private_pem='****')"


def new_private_pem() -> str:
    """A fresh EC P-256 private key as PEM text, the kind a CDP API key holds (tests make theirs here too)."""
    return (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        .decode()
    )


def load_or_create_key(path: Path) -> ApiKey:
    """Read a CDP JSON key file, or create one holding a fresh EC P-256 key."""
    if path.exists():
        data = json.loads(path.read_text(encoding="utf-8"))
        return ApiKey(name=str(data["name"]), private_pem=str(data["privateKey"]))
    key = ApiKey(name=f"organizations/simulator/apiKeys/{uuid.uuid4()}", private_pem=new_private_pem())
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"name": key.name, "privateKey": key.private_pem}, indent=2), encoding="utf-8")
    tmp.chmod(0o600)
    tmp.replace(path)
    return key


class KeyRegistry:
    """Key name -> public key. Thread-safe: tests register keys from their own thread."""

    def __init__(self) -> None:
        self._keys: dict[str, PublicKey] = {}
        self._lock = threading.Lock()

    def register(self, name: str, public_pem: str) -> None:
        key = serialization.load_pem_public_key(public_pem.encode())
        if not isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
            raise ValueError(f"key {name!r}: only EC P-256 and Ed25519 keys are supported")
        with self._lock:
            self._keys[name] = key

    def verify(self, authorization: str | None, method: str, hosts: tuple[str, ...], path: str) -> str:
        """Check a REST ``Bearer <jwt>`` header for this request; return the key name or raise AuthError."""
        if not authorization or not authorization.startswith("Bearer "):
            raise AuthError("missing bearer token")
        kid, claims = self._decode(authorization.removeprefix("Bearer ").strip())
        uri = claims.get("uri")
        if not isinstance(uri, str) or uri not in {f"{method} {host}{path}" for host in hosts}:  # a list: 401
            raise AuthError(f"uri claim {claims.get('uri')!r} does not match the request")
        return kid

    def verify_ws(self, token: object) -> str:
        """Check a WebSocket subscribe JWT (same claims, no ``uri``); return the key name or raise AuthError."""
        if not isinstance(token, str) or not token:
            raise AuthError("missing jwt")
        return self._decode(token)[0]

    def _decode(self, token: str) -> tuple[str, dict[str, Any]]:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            with self._lock:
                key = self._keys.get(str(kid))
            if key is None:
                raise AuthError(f"unknown key {kid!r}")
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=["ES256", "EdDSA"],
                issuer="cdp",
                leeway=LEEWAY_SECONDS,
                options={"require": ["sub", "iss", "nbf", "exp"]},
            )
        except jwt.PyJWTError as exc:
            raise AuthError(str(exc)) from None
        if claims.get("sub") != kid:
            raise AuthError("sub does not match kid")
        if claims["exp"] - claims["nbf"] > 600 or claims["nbf"] > time.time() + LEEWAY_SECONDS:
            raise AuthError("token lifetime out of range")
        return str(kid), claims
