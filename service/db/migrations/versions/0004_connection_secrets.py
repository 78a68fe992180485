"""connection secrets at rest: public form in clear, secrets sealed with BATCHSYNC_SECRET_KEY

Every existing connection is split by its type's schema (undeclared keys count as secret): url,
params and options keep their masked form, the secrets go into `secrets` sealed by the key that
`secrets_key_id` names. Rows with secrets need the key: without one the upgrade refuses.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""
import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

from service.catalog.redaction import merge, split
from service.config import Settings
from service.db.migrate import SECRET_KEYS
from service.security.secrets import Keyring, Sealed, connection_context

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NO_KEY = ("connections hold secrets in clear and BATCHSYNC_SECRET_KEY is not set: set it (or run `batchsync up`, "
          "which creates <data_dir>/secret_key) so migration 0004 can encrypt them")

_UPDATE = sa.text("UPDATE connections SET url = :url, params = CAST(:params AS jsonb), "
                  "options = CAST(:options AS jsonb), secrets = :secrets, secrets_key_id = :key_id WHERE id = :id")


def _keys() -> Keyring:
    keys = context.config.attributes.get(SECRET_KEYS) or Keyring.from_settings(Settings())
    if not keys.configured:
        raise RuntimeError(NO_KEY)
    return keys


def upgrade() -> None:
    op.add_column("connections", sa.Column("secrets", sa.Text(), nullable=True))
    op.add_column("connections", sa.Column("secrets_key_id", sa.String(length=64), nullable=True))
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, type, url, params, options FROM connections ORDER BY id FOR UPDATE"))
    keys: Keyring | None = None
    for row in rows.mappings().all():
        public = split(row["type"], row["url"], row["params"] or {}, row["options"] or {})
        if public.secrets is None:
            continue
        keys = keys or _keys()
        sealed = keys.seal(public.secrets, connection_context(row["id"]))
        bind.execute(_UPDATE, {"id": row["id"], "url": public.url, "params": json.dumps(public.params),
                               "options": json.dumps(public.options), "secrets": sealed.token,
                               "key_id": sealed.key_id})


def downgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, url, params, options, secrets, secrets_key_id FROM connections "
                                "WHERE secrets IS NOT NULL ORDER BY id FOR UPDATE"))
    keys: Keyring | None = None
    for row in rows.mappings().all():
        keys = keys or _keys()
        secrets = keys.open(Sealed(row["secrets_key_id"], row["secrets"]), connection_context(row["id"]))
        url, params, options = merge(row["url"], row["params"] or {}, row["options"] or {}, secrets)
        bind.execute(_UPDATE, {"id": row["id"], "url": url, "params": json.dumps(params),
                               "options": json.dumps(options), "secrets": None, "key_id": None})
    op.drop_column("connections", "secrets_key_id")
    op.drop_column("connections", "secrets")
