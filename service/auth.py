"""Bearer-token auth: verify a JWT against the one configured key, and mint dev tokens.

The algorithm is pinned by the configured key (HS256 for `jwt_secret`, RS256 for `jwt_public_key`),
never read from the token header, so `alg: none` and key-confusion tokens are refused. Every token
must say when it was issued and when it expires, and may live at most `jwt_max_ttl_seconds`: a
leaked token is worth a day at most, whoever issued it.
"""

import logging
import time
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from service.config import Settings

log = logging.getLogger(__name__)

ALL_PERMISSIONS = "*:*:*"


class AuthReason(StrEnum):
    """Why a request was not authenticated: `data.reason` of the 401 and, past `missing`, the RFC 6750
    `error_description`. Safe to tell: every reason past `bad_algorithm` is only reached once the
    signature verified, so a forger learns nothing about the key or the claims it checks."""

    MISSING = "missing"
    MALFORMED = "malformed"
    BAD_ALGORITHM = "bad_algorithm"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    MISSING_CLAIM = "missing_claim"
    BAD_CLAIMS = "bad_claims"
    WRONG_ISSUER = "wrong_issuer"
    WRONG_AUDIENCE = "wrong_audience"
    TTL_TOO_LONG = "ttl_too_long"
    NOT_CONFIGURED = "not_configured"


REASON_TEXT: dict[AuthReason, str] = {
    AuthReason.MISSING: "no bearer token was sent",
    AuthReason.MALFORMED: "the bearer token is not a well-formed JWT",
    AuthReason.BAD_ALGORITHM: "the token is signed with an algorithm this server does not accept",
    AuthReason.BAD_SIGNATURE: "the token signature does not verify with the configured key",
    AuthReason.EXPIRED: "the token has expired",
    AuthReason.NOT_YET_VALID: "the token is not valid yet (iat or nbf in the future)",
    AuthReason.MISSING_CLAIM: "the token lacks a required claim (sub, iat or exp)",
    AuthReason.BAD_CLAIMS: "the token claims are not well-formed (sub a string, perms a list of strings)",
    AuthReason.WRONG_ISSUER: "the token was issued by another issuer",
    AuthReason.WRONG_AUDIENCE: "the token is meant for another audience",
    AuthReason.TTL_TOO_LONG: "the token lifetime (exp - iat) exceeds BATCHSYNC_JWT_MAX_TTL_SECONDS",
    AuthReason.NOT_CONFIGURED: "the server has no token key configured",
}
"""English on purpose: RFC 6750 allows only printable ASCII in `error_description`."""

_JWT_REASONS: tuple[tuple[type[Exception], AuthReason], ...] = (
    (jwt.ExpiredSignatureError, AuthReason.EXPIRED),
    (jwt.ImmatureSignatureError, AuthReason.NOT_YET_VALID),
    (jwt.MissingRequiredClaimError, AuthReason.MISSING_CLAIM),
    (jwt.InvalidIssuerError, AuthReason.WRONG_ISSUER),
    (jwt.InvalidAudienceError, AuthReason.WRONG_AUDIENCE),
    (jwt.InvalidSignatureError, AuthReason.BAD_SIGNATURE),
    (jwt.InvalidAlgorithmError, AuthReason.BAD_ALGORITHM),
    (jwt.InvalidIssuedAtError, AuthReason.BAD_CLAIMS),
)
"""PyJWT's error → our reason, most specific first; anything else is `malformed`."""


class AuthFailed(Exception):
    """The token is missing, malformed, expired or wrongly signed: 401, with the reason as data."""

    def __init__(self, detail: str, reason: AuthReason = AuthReason.MISSING) -> None:
        super().__init__(detail)
        self.reason = reason


class Forbidden(Exception):
    """The token is valid but lacks the permission: 403, naming the permission."""

    def __init__(self, permission: str) -> None:
        super().__init__(permission)
        self.permission = permission


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def unauthorized(error: AuthFailed) -> tuple[dict[str, str], dict[str, str]]:
    """The 401's `data` and `WWW-Authenticate` header (RFC 6750 §3): no error code when no token was sent."""
    text = REASON_TEXT[error.reason]
    if error.reason is AuthReason.MISSING:
        challenge = 'Bearer realm="batchsync"'
    else:
        challenge = f'Bearer realm="batchsync", error="invalid_token", error_description="{_quoted(text)}"'
    return {"reason": error.reason.value, "description": text}, {"WWW-Authenticate": challenge}


def forbidden(error: Forbidden) -> tuple[dict[str, str], dict[str, str]]:
    """The 403's `data` and header (RFC 6750 §3.1 `insufficient_scope`, the permission as the scope)."""
    text = f"the token lacks the permission {error.permission}"
    challenge = (f'Bearer realm="batchsync", error="insufficient_scope", scope="{_quoted(error.permission)}", '
                 f'error_description="{_quoted(text)}"')
    return ({"reason": "missing_permission", "permission": error.permission, "description": text},
            {"WWW-Authenticate": challenge})


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
        raise AuthFailed("no key configured", AuthReason.NOT_CONFIGURED) from error
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
        reason = next((why for kind, why in _JWT_REASONS if isinstance(error, kind)), AuthReason.MALFORMED)
        raise AuthFailed(type(error).__name__, reason) from error
    lifetime = claims["exp"] - claims["iat"]
    if lifetime > settings.jwt_max_ttl_seconds:
        raise AuthFailed(f"token lifetime {lifetime}s exceeds BATCHSYNC_JWT_MAX_TTL_SECONDS", AuthReason.TTL_TOO_LONG)
    sub, perms = claims.get("sub"), claims.get("perms", [])
    if not isinstance(sub, str) or not sub:
        raise AuthFailed("token has no sub", AuthReason.MISSING_CLAIM if sub is None else AuthReason.BAD_CLAIMS)
    if not isinstance(perms, list) or not all(isinstance(p, str) for p in perms):
        raise AuthFailed("perms is not a list of strings", AuthReason.BAD_CLAIMS)
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
