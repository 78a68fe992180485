"""Bearer-token auth: verify a JWT against the one configured key, and mint dev tokens.

The algorithm is pinned by the configured key (HS256 for `jwt_secret`, RS256 for `jwt_public_key`),
never read from the token header, so `alg: none` and key-confusion tokens are refused. Every token
must say when it was issued and when it expires, and may live at most `jwt_max_ttl_seconds`: a
leaked token is worth a day at most, whoever issued it.
"""

import logging
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from service.config import Settings

log = logging.getLogger(__name__)

ALL_PERMISSIONS = "*:*:*"


class AuthFailed(Exception):
    """The token is missing, malformed, expired or wrongly signed: 401."""


class Forbidden(Exception):
    """The token is valid but lacks the permission: 403."""


class TokenConfigError(RuntimeError):
    """No key, or the wrong kind of key, is configured for what was asked."""


class TokenTtlTooLong(ValueError):
    """A token was asked to live longer than BATCHSYNC_JWT_MAX_TTL_SECONDS allows; the API would refuse it."""


def permission_matches(granted: str, wanted: str) -> bool:
    """`a:b:*` grants every `a:b:x`; a trailing `*` also covers any deeper segments."""
    if granted == wanted:
        return True
    have, want = granted.split(":"), wanted.split(":")
    for index, segment in enumerate(have):
        if segment == "*" and index == len(have) - 1:
            return len(want) >= len(have)
        if index >= len(want) or (segment != "*" and segment != want[index]):
            return False
    return len(have) == len(want)


@dataclass(frozen=True)
class Principal:
    sub: str
    perms: frozenset[str]

    def has(self, perm: str) -> bool:
        return any(permission_matches(granted, perm) for granted in self.perms)


@lru_cache(maxsize=4)
def _public_key(text: str) -> Any:
    """Accept the PEM itself or a path to a PEM file."""
    pem = text if text.lstrip().startswith("-----BEGIN") else Path(text).read_text()
    return load_pem_public_key(pem.encode())


def _verification_key(settings: Settings) -> tuple[Any, str]:
    if settings.jwt_secret is not None:
        return settings.jwt_secret.get_secret_value(), "HS256"
    if settings.jwt_public_key is not None:
        return _public_key(settings.jwt_public_key), "RS256"
    raise TokenConfigError("neither BATCHSYNC_JWT_SECRET nor BATCHSYNC_JWT_PUBLIC_KEY is configured")


_warned_no_key = False


def verify_token(settings: Settings, token: str) -> Principal:
    """Decode and check `token`; raises AuthFailed for anything short of a valid, unexpired token."""
    global _warned_no_key
    try:
        key, algorithm = _verification_key(settings)
    except TokenConfigError as error:
        if not _warned_no_key:
            _warned_no_key = True
            log.warning("every protected route answers 401: %s", error)
        raise AuthFailed("no key configured") from error
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            options={"require": ["exp", "iat"], "verify_aud": settings.jwt_audience is not None},
        )
    except (jwt.PyJWTError, ValueError, TypeError) as error:
        raise AuthFailed(type(error).__name__) from error
    lifetime = claims["exp"] - claims["iat"]
    if lifetime > settings.jwt_max_ttl_seconds:
        raise AuthFailed(f"token lifetime {lifetime}s exceeds BATCHSYNC_JWT_MAX_TTL_SECONDS")
    sub, perms = claims.get("sub"), claims.get("perms", [])
    if not isinstance(sub, str) or not sub:
        raise AuthFailed("token has no sub")
    if not isinstance(perms, list) or not all(isinstance(p, str) for p in perms):
        raise AuthFailed("perms is not a list of strings")
    return Principal(sub=sub, perms=frozenset(perms))


def mint_token(settings: Settings, sub: str, perms: list[str], ttl_seconds: int = 3600) -> str:
    """An HS256 token for local use; RS256 tokens come from the identity provider that holds the private key.

    Refuses (TokenTtlTooLong) a lifetime the API would refuse, rather than mint a token that never works.
    """
    if not 0 < ttl_seconds <= settings.jwt_max_ttl_seconds:
        raise TokenTtlTooLong(
            f"a token may live 1 to {settings.jwt_max_ttl_seconds} seconds (BATCHSYNC_JWT_MAX_TTL_SECONDS), "
            f"not {ttl_seconds}"
        )
    if settings.jwt_secret is None:
        if settings.jwt_public_key is not None:
            raise TokenConfigError(
                "cannot mint tokens: only BATCHSYNC_JWT_PUBLIC_KEY (RS256) is configured, and minting "
                "needs the private key; set BATCHSYNC_JWT_SECRET instead or use your identity provider"
            )
        raise TokenConfigError("cannot mint tokens: set BATCHSYNC_JWT_SECRET (at least 16 characters)")
    now = int(time.time())
    claims: dict[str, Any] = {"sub": sub, "perms": list(perms), "iat": now, "exp": now + ttl_seconds}
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256")
