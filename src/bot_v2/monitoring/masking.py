"""Secret masking: secrets never reach logs, checkpoints, metrics or exceptions in the clear.

``mask_secret("abcdef123456")`` -> ``"****3456"``; ``mask_url("redis://u:pw@h:6379/0")`` -> password masked.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

_VISIBLE = 4


def mask_secret(secret: str | None) -> str:
    """Return ``****`` plus the last four characters (just ``****`` for short or empty secrets)."""
    if not secret:
        return "****"
    if len(secret) <= 2 * _VISIBLE:
        return "****"
    return "****" + secret[-_VISIBLE:]


def mask_url(url: str | None) -> str | None:
    """Mask the password in a URL such as ``postgresql://user:pw@host/db``."""
    if url is None:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return "****"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:{mask_secret(parts.password)}@{netloc}"))


_PEM = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S)
_URL_PW = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@", re.I)


class SecretMasker:
    """Replaces registered secrets (and any PEM private key or URL password) in text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None) -> None:
        if secret and len(secret) >= 6:
            self._secrets.add(secret)
            escaped = secret.replace("\n", "\\n")
            if escaped != secret:
                self._secrets.add(escaped)

    def mask(self, text: str) -> str:
        text = _PEM.sub("****PRIVATE KEY****", text)
        text = _URL_PW.sub(lambda m: f"{m['scheme']}{m['user']}:{mask_secret(m['pw'])}@", text)
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, mask_secret(secret))
        return text


class MaskingFilter(logging.Filter):
    """A logging filter that masks secrets in the fully formatted message (and exception text)."""

    def __init__(self, masker: SecretMasker) -> None:
        super().__init__()
        self.masker = masker

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = self.masker.mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.masker.mask(logging.Formatter().formatException(record.exc_info))
        return True
