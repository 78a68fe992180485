"""Token verification: the key pins the algorithm, `iat` and `exp` are required and at most
BATCHSYNC_JWT_MAX_TTL_SECONDS apart, permissions match with wildcards."""

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from service.auth import (
    AuthFailed,
    Principal,
    TokenConfigError,
    TokenTtlTooLong,
    mint_token,
    permission_matches,
    verify_token,
)
from service.config import Settings

SECRET = "unit-test-secret-0123456789-abcdef"


def base64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def hs_settings(**extra) -> Settings:
    return Settings(_env_file=None, jwt_secret=SECRET, **extra)


@pytest.fixture(scope="module")
def rsa_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


def claims(**extra) -> dict:
    now = int(time.time())
    return {"sub": "alice", "perms": ["integration:batch:sync"], "iat": now, "exp": now + 60, **extra}


def test_minted_token_verifies_with_its_claims() -> None:
    settings = hs_settings()
    principal = verify_token(settings, mint_token(settings, "alice", ["integration:batch:sync"]))
    assert principal == Principal("alice", frozenset({"integration:batch:sync"}))
    assert principal.has("integration:batch:sync")
    assert not principal.has("integration:batch:add")


def test_minting_with_only_a_public_key_explains_why(rsa_pair) -> None:
    with pytest.raises(TokenConfigError, match="BATCHSYNC_JWT_SECRET"):
        mint_token(Settings(_env_file=None, jwt_public_key=rsa_pair[1]), "alice", [])


@pytest.mark.parametrize("token", [
    "",
    "not-a-jwt",
    jwt.encode(claims(exp=int(time.time()) - 5), SECRET, algorithm="HS256"),
    jwt.encode(claims(), "another-secret-of-enough-length-xyz", algorithm="HS256"),
    jwt.encode(claims(), None, algorithm="none"),
    jwt.encode({"sub": "alice", "perms": []}, SECRET, algorithm="HS256"),
    jwt.encode(claims(sub=None), SECRET, algorithm="HS256"),
    jwt.encode(claims(perms="*:*:*"), SECRET, algorithm="HS256"),
    jwt.encode(claims(), SECRET, algorithm="HS512"),
], ids=["empty", "malformed", "expired", "wrong-secret", "alg-none", "no-exp", "no-sub", "perms-not-list",
        "other-hmac-alg"])
def test_bad_tokens_are_refused(token: str) -> None:
    with pytest.raises(AuthFailed):
        verify_token(hs_settings(), token)


def test_lifetime_up_to_the_maximum_is_accepted_and_beyond_it_refused() -> None:
    settings = hs_settings(jwt_max_ttl_seconds=3600)
    now = int(time.time())
    assert verify_token(settings, jwt.encode(claims(iat=now, exp=now + 3600), SECRET, "HS256")).sub == "alice"
    for bad in (claims(iat=now, exp=now + 3601), claims(iat=now - 7200, exp=now + 60)):
        with pytest.raises(AuthFailed):
            verify_token(settings, jwt.encode(bad, SECRET, "HS256"))


@pytest.mark.parametrize("missing", ["iat", "exp"])
def test_a_token_without_iat_or_exp_is_refused(missing: str) -> None:
    token = {key: value for key, value in claims().items() if key != missing}
    with pytest.raises(AuthFailed):
        verify_token(hs_settings(), jwt.encode(token, SECRET, "HS256"))


def test_an_rs256_token_from_an_identity_provider_is_bounded_too(rsa_pair) -> None:
    private, public = rsa_pair
    now = int(time.time())
    long_lived = jwt.encode(claims(iat=now, exp=now + 90_000), private, algorithm="RS256")
    with pytest.raises(AuthFailed):
        verify_token(Settings(_env_file=None, jwt_public_key=public), long_lived)


def test_minting_refuses_a_lifetime_the_api_would_refuse() -> None:
    settings = hs_settings(jwt_max_ttl_seconds=600)
    claims_ = jwt.decode(mint_token(settings, "alice", [], ttl_seconds=600), SECRET, algorithms=["HS256"])
    assert claims_["exp"] - claims_["iat"] == 600
    for ttl in (601, 0, -5):
        with pytest.raises(TokenTtlTooLong, match="BATCHSYNC_JWT_MAX_TTL_SECONDS"):
            mint_token(settings, "alice", [], ttl_seconds=ttl)


def test_rs256_token_is_accepted_with_public_key_and_refused_with_secret(rsa_pair) -> None:
    private, public = rsa_pair
    token = jwt.encode(claims(), private, algorithm="RS256")
    assert verify_token(Settings(_env_file=None, jwt_public_key=public), token).sub == "alice"
    with pytest.raises(AuthFailed):
        verify_token(hs_settings(), token)


def test_hs256_token_is_refused_when_rs256_is_configured(rsa_pair) -> None:
    _, public = rsa_pair
    with pytest.raises(AuthFailed):
        verify_token(Settings(_env_file=None, jwt_public_key=public), jwt.encode(claims(), SECRET, "HS256"))


def test_hs256_signed_with_the_public_key_text_is_refused(rsa_pair) -> None:
    """Key confusion: an attacker signing HS256 with the published PEM must not pass."""
    _, public = rsa_pair
    segments = [base64url(json.dumps(part).encode()) for part in ({"alg": "HS256", "typ": "JWT"}, claims())]
    signing_input = ".".join(segments).encode()
    signature = hmac.new(public.encode(), signing_input, hashlib.sha256).digest()
    forged = f"{signing_input.decode()}.{base64url(signature)}"
    with pytest.raises(AuthFailed):
        verify_token(Settings(_env_file=None, jwt_public_key=public), forged)


def test_no_key_configured_refuses_everything() -> None:
    token = jwt.encode(claims(), SECRET, algorithm="HS256")
    with pytest.raises(AuthFailed):
        verify_token(Settings(_env_file=None), token)


def test_issuer_and_audience_are_checked_when_configured() -> None:
    settings = hs_settings(jwt_issuer="idp", jwt_audience="batchsync")
    assert verify_token(settings, mint_token(settings, "alice", [])).sub == "alice"
    for bad in (claims(iss="idp", aud="other"), claims(iss="other", aud="batchsync"), claims()):
        with pytest.raises(AuthFailed):
            verify_token(settings, jwt.encode(bad, SECRET, algorithm="HS256"))


@pytest.mark.parametrize(("granted", "wanted", "expected"), [
    ("*:*:*", "integration:batch:sync", True),
    ("integration:batch:*", "integration:batch:sync", True),
    ("integration:*:query", "integration:batch:query", True),
    ("integration:*", "integration:connection:edit", True),
    ("integration:batch:*", "integration:connection:add", False),
    ("integration:*:query", "integration:batch:list", False),
    ("integration:batch", "integration:batch:sync", False),
    ("integration:batch:sync:extra", "integration:batch:sync", False),
    ("integration:batch:query", "integration:batch:sync", False),
])
def test_permission_wildcards(granted: str, wanted: str, expected: bool) -> None:
    assert permission_matches(granted, wanted) is expected
