"""Alembic, configured in code so that `batchsync db upgrade` works from any directory."""

from pathlib import Path
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config

if TYPE_CHECKING:
    from service.security.secrets import Keyring

MIGRATIONS = Path(__file__).parent / "migrations"
SECRET_KEYS = "secret_keys"
"""Config attribute: the Keyring migrations that encrypt use (else they read BATCHSYNC_SECRET_KEY)."""


def alembic_config(database_url: str, keys: "Keyring | None" = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    if keys is not None:
        config.attributes[SECRET_KEYS] = keys
    return config


def upgrade(database_url: str, revision: str = "head", keys: "Keyring | None" = None) -> None:
    command.upgrade(alembic_config(database_url, keys), revision)
