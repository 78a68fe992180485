"""Auth over HTTP: every bad token is 401, a missing permission 403, and the open routes stay open."""

import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.api import SECRET, api_client, api_settings, asyncpg_url, bearer

UNAUTHORIZED = {"code": 401, "message": "认证失败，无法访问系统资源", "data": None}
PROTECTED = ("/integration/batch/list", "/integration/connection/list", "/integration/batch/statistics")


def rsa_keys() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


PRIVATE_KEY, PUBLIC_KEY = rsa_keys()


def claims(**extra) -> dict:
    now = int(time.time())
    return {"sub": "alice", "perms": ["*:*:*"], "iat": now, "exp": now + 300, **extra}


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
async def hs_client(state_dsn):
    async with api_client(api_settings(asyncpg_url(state_dsn))) as client:
        yield client


@pytest.fixture(scope="module")
async def rs_client(state_dsn):
    settings = api_settings(asyncpg_url(state_dsn), jwt_secret=None, jwt_public_key=PUBLIC_KEY)
    async with api_client(settings) as client:
        yield client


@pytest.mark.parametrize(("headers", "reason"), [
    ({"Authorization": ""}, "missing"),
    ({"Authorization": "Basic YWxpY2U6cHc="}, "missing"),
    (auth("garbage"), "malformed"),
    (auth(jwt.encode(claims(exp=int(time.time()) - 10), SECRET, algorithm="HS256")), "expired"),
    (auth(jwt.encode(claims(), "some-other-secret-0123456789-abcdefgh", algorithm="HS256")), "bad_signature"),
    (auth(jwt.encode(claims(), None, algorithm="none")), "bad_algorithm"),
    (auth(jwt.encode(claims(), PRIVATE_KEY, algorithm="RS256")), "bad_algorithm"),
    (auth(jwt.encode({"sub": "alice", "perms": ["*:*:*"]}, SECRET, algorithm="HS256")), "missing_claim"),
    (auth(jwt.encode({"sub": "alice", "perms": ["*:*:*"], "exp": int(time.time()) + 300}, SECRET, algorithm="HS256")),
     "missing_claim"),
    (auth(jwt.encode(claims(iat=int(time.time()) - 90_000, exp=int(time.time()) + 300), SECRET, algorithm="HS256")),
     "ttl_too_long"),
    (auth(jwt.encode(claims(iat=int(time.time()) + 600, exp=int(time.time()) + 900), SECRET, algorithm="HS256")),
     "not_yet_valid"),
    (auth(jwt.encode(claims(perms="*:*:*"), SECRET, algorithm="HS256")), "bad_claims"),
], ids=["none", "basic", "malformed", "expired", "wrong-key", "alg-none", "rs256-for-hs256", "no-exp", "no-iat",
        "longer-than-max-ttl", "issued-in-the-future", "perms-not-a-list"])
async def test_bad_tokens_are_401_with_their_reason(hs_client, headers: dict, reason: str) -> None:
    """The message stays SPEC's; `data.reason` and RFC 6750's error_description say why; the token is never
    echoed."""
    for path in PROTECTED:
        response = await hs_client.get(path, headers=headers)
        assert response.status_code == 401, path
        body = response.json()
        assert (body["code"], body["message"]) == (UNAUTHORIZED["code"], UNAUTHORIZED["message"])
        assert body["data"]["reason"] == reason
        challenge = response.headers["www-authenticate"]
        assert challenge.startswith('Bearer realm="batchsync"')
        if reason == "missing":
            assert "error=" not in challenge
        else:
            assert 'error="invalid_token"' in challenge
            assert f'error_description="{body["data"]["description"]}"' in challenge
            assert challenge.isascii()
        token = headers["Authorization"].partition(" ")[2]
        for part in filter(None, token.split(".")):
            assert part not in response.text and part not in challenge


async def test_rs256_configuration(rs_client) -> None:
    good = await rs_client.get("/integration/batch/list", headers=auth(jwt.encode(claims(), PRIVATE_KEY, "RS256")))
    assert good.status_code == 200
    for token in (jwt.encode(claims(), SECRET, algorithm="HS256"), jwt.encode(claims(), None, algorithm="none")):
        response = await rs_client.get("/integration/batch/list", headers=auth(token))
        assert response.json()["message"] == UNAUTHORIZED["message"]
        assert response.json()["data"]["reason"] == "bad_algorithm"


async def test_missing_permission_is_403_and_wildcards_grant(hs_client) -> None:
    response = await hs_client.get("/integration/batch/list", headers=bearer(["integration:batch:query"]))
    assert response.status_code == 403
    body = response.json()
    assert (body["code"], body["message"]) == (403, "无权限执行此操作")
    assert body["data"] == {"reason": "missing_permission", "permission": "integration:batch:list",
                            "description": "the token lacks the permission integration:batch:list"}
    challenge = response.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge and 'scope="integration:batch:list"' in challenge
    assert (await hs_client.get("/integration/batch/list",
                                headers=bearer(["integration:batch:list"]))).status_code == 200
    assert (await hs_client.get("/integration/batch/list", headers=bearer(["integration:batch:*"]))).status_code == 200
    assert (await hs_client.get("/integration/connection/list",
                                headers=bearer(["integration:batch:*"]))).status_code == 403


async def test_auth_is_checked_before_the_body(hs_client) -> None:
    response = await hs_client.post("/integration/batch", json={"junk": True}, headers={"Authorization": ""})
    assert response.status_code == 401


async def test_without_any_key_every_protected_route_is_401(state_dsn) -> None:
    async with api_client(api_settings(asyncpg_url(state_dsn), jwt_secret=None)) as client:
        for path in PROTECTED:
            response = await client.get(path, headers=auth(jwt.encode(claims(), SECRET, algorithm="HS256")))
            assert response.json()["message"] == UNAUTHORIZED["message"]
            assert response.json()["data"]["reason"] == "not_configured"
        assert (await client.get("/healthz")).status_code == 200


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/docs", "/redoc", "/openapi.json"])
async def test_open_routes_need_no_token(hs_client, path: str) -> None:
    response = await hs_client.get(path, headers={"Authorization": ""})
    assert response.status_code == 200


async def test_the_openapi_document_shows_what_401_and_403_carry(hs_client) -> None:
    document = (await hs_client.get("/openapi.json")).json()
    responses = document["paths"]["/integration/batch/list"]["get"]["responses"]
    unauthorized = responses["401"]["content"]["application/json"]["example"]
    assert unauthorized["data"] == {"reason": "expired", "description": "the token has expired"}
    assert "ttl_too_long" in responses["401"]["description"]
    assert responses["403"]["content"]["application/json"]["example"]["data"]["reason"] == "missing_permission"
