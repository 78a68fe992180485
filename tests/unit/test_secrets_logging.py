"""The log filter masks secrets in any record, whoever logs it."""

import logging

import pytest

from service.catalog.redaction import MASK
from service.logging_filters import SecretMask, install, remember


@pytest.mark.parametrize(("line", "secret"), [
    ("GET https://api.example/v1/items?page=2&key=AIzaK3y HTTP/1.1 200", "AIzaK3y"),
    ("fetched https://blob.example/x?sv=1&sig=Zm9vYmFy%3D", "Zm9vYmFy%3D"),
    ("connect postgresql://app:hunter2@db:5432/app failed", "hunter2"),
    ("dsn mysql://root:pw-9@127.0.0.1/test", "pw-9"),
    ("headers {'Authorization': 'Bearer eyJhbGciOi.x.y'}", "eyJhbGciOi"),
    ("auth={\"type\": \"bearer\", \"token\": \"tok-77\"}", "tok-77"),
    ("kafka saslPassword=s4sl and sasl_password='s4sl2'", "s4sl"),
    ("postgresql://u@h/db?passphrase=pp-123&pw=w-456", "pp-123"),
    ("postgresql://u@h/db?passphrase=pp-123&pw=w-456", "w-456"),
])
def test_secrets_in_lines_are_masked(line: str, secret: str) -> None:
    masked = SecretMask().mask(line)
    assert secret not in masked and MASK in masked


def test_values_remembered_are_masked_anywhere() -> None:
    remember(["X-custom-header-value-91"])
    assert SecretMask().mask("sent X-Api-Key: X-custom-header-value-91") == f"sent X-Api-Key: {MASK}"


def test_installed_mask_covers_args_and_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    install()
    log = logging.getLogger("some.library")
    with caplog.at_level(logging.INFO):
        log.info("opening %s", "postgresql://app:pa55word@db/app")
        try:
            raise RuntimeError("conn_str=postgresql://app:pa55word@db/app")
        except RuntimeError:
            log.exception("failed")
    assert "pa55word" not in caplog.text
    assert caplog.text.count(MASK) >= 2
