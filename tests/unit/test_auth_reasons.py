"""Why a token is refused, as the 401 tells it: one reason per failure, the RFC 6750 challenge built from
it, and nothing of the token in either."""

import time
from collections.abc import Callable

import jwt
import pytest

from service.auth import (
    REASON_TEXT,
    AuthFailed,
    AuthReason,
    Forbidden,
    forbidden,
    unauthorized,
    verify_token,
)
from service.config import Settings

pytestmark = pytest.mark.usefixtures("fresh_secret_memory")

SECRET = "unit-test-secret-0123456789-abcdef"
OTHER = "another-secret-0123456789-abcdefgh"


def token(key: str = SECRET, **overrides: object) -> str:
    now = int(time.time())
    claims: dict[str, object] = {"sub": "alice", "perms": ["*:*:*"], "iat": now, "exp": now + 60}
    claims.update(overrides)
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, key, algorithm="HS256")


def reason_of(settings: Settings, value: str) -> AuthReason:
    with pytest.raises(AuthFailed) as failed:
        verify_token(settings, value)
    return failed.value.reason


def now() -> int:
    return int(time.time())


# Each token is minted when its test runs, not at import: a token minted at collection would expire during a
# long run and turn every case into EXPIRED.
CASES: list[tuple[Callable[[], str], dict, AuthReason]] = [
    (lambda: "garbage", {}, AuthReason.MALFORMED),
    (lambda: jwt.encode({"sub": "a"}, None, algorithm="none"), {}, AuthReason.BAD_ALGORITHM),
    (lambda: token(OTHER), {}, AuthReason.BAD_SIGNATURE),
    (lambda: token(exp=now() - 5, iat=now() - 60), {}, AuthReason.EXPIRED),
    (lambda: token(iat=now() + 600, exp=now() + 660), {}, AuthReason.NOT_YET_VALID),
    (lambda: token(exp=None), {}, AuthReason.MISSING_CLAIM),
    (lambda: token(sub=None), {}, AuthReason.MISSING_CLAIM),
    (lambda: token(sub=""), {}, AuthReason.BAD_CLAIMS),
    (lambda: token(perms=[1, 2]), {}, AuthReason.BAD_CLAIMS),
    (lambda: token(iat="yesterday"), {}, AuthReason.BAD_CLAIMS),
    (lambda: token(iss="someone-else"), {"jwt_issuer": "batchsync"}, AuthReason.WRONG_ISSUER),
    (lambda: token(aud="another-api"), {"jwt_audience": "batchsync"}, AuthReason.WRONG_AUDIENCE),
    (lambda: token(iat=now() - 90_000, exp=now() + 60), {}, AuthReason.TTL_TOO_LONG),
    (lambda: token(), {"jwt_secret": None}, AuthReason.NOT_CONFIGURED),
]


@pytest.mark.parametrize(("make", "settings", "reason"), CASES, ids=[case[2].value + str(i) for i, case in
                                                                     enumerate(CASES)])
def test_each_failure_has_its_reason(make: Callable[[], str], settings: dict, reason: AuthReason) -> None:
    assert reason_of(Settings(_env_file=None, **{"jwt_secret": SECRET, **settings}), make()) is reason


def test_every_reason_is_described_in_ascii_and_the_challenge_quotes_it() -> None:
    assert set(REASON_TEXT) == set(AuthReason)
    for reason in AuthReason:
        data, headers = unauthorized(AuthFailed("detail that stays in the log", reason))
        assert data == {"reason": reason.value, "description": REASON_TEXT[reason]}
        challenge = headers["WWW-Authenticate"]
        assert challenge.isascii() and "detail that stays" not in challenge
        if reason is AuthReason.MISSING:
            assert challenge == 'Bearer realm="batchsync"'
        else:
            assert challenge == (f'Bearer realm="batchsync", error="invalid_token", '
                                 f'error_description="{REASON_TEXT[reason]}"')


def test_403_names_the_permission_as_the_scope() -> None:
    data, headers = forbidden(Forbidden('integration:batch:"sync"'))
    assert data["permission"] == 'integration:batch:"sync"' and data["reason"] == "missing_permission"
    assert 'scope="integration:batch:\\"sync\\""' in headers["WWW-Authenticate"]
    assert 'error="insufficient_scope"' in headers["WWW-Authenticate"]
