"""The Alembic migrations build exactly the schema the models describe, and go down and up again."""

from alembic import command

from service.db.migrate import alembic_config, upgrade
from tests.support.databases import fresh_database


def test_migrations_match_the_models_and_downgrade_cleanly() -> None:
    with fresh_database("bs_migrate") as dsn:
        url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
        upgrade(url)
        config = alembic_config(url)
        command.check(config)
        command.downgrade(config, "base")
        upgrade(url)
        command.check(config)
