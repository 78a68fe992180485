"""A COPY takes no parameters: the PostgreSQL source inlines its keyset bounds as literals itself
(`inline_text_params`), instead of asyncpg's two extra round trips. Quoting must be exact."""

from service.connectors.postgresql.source import inline_text_params


def test_each_placeholder_becomes_its_quoted_text() -> None:
    sql = 'SELECT "id" FROM "t" WHERE "id" > CAST($1::text AS bigint) AND "id" <= CAST($2::text AS bigint)'
    assert inline_text_params(sql, ["41", "99"]) == (
        """SELECT "id" FROM "t" WHERE "id" > CAST('41'::text AS bigint) AND "id" <= CAST('99'::text AS bigint)""")


def test_a_quote_in_a_value_is_doubled_and_a_backslash_kept() -> None:
    assert inline_text_params("SELECT $1", ["o'k\\'; DROP TABLE t; --"]) == "SELECT 'o''k\\''; DROP TABLE t; --'"


def test_dollar_digits_inside_identifiers_and_literals_are_not_placeholders() -> None:
    sql = """SELECT "a$1", "b""$2", 'x$1', 'it''s $2' FROM t WHERE k > $2 AND j = $10"""
    args = ["one", "two", *["z"] * 7, "ten"]
    assert inline_text_params(sql, args) == (
        """SELECT "a$1", "b""$2", 'x$1', 'it''s $2' FROM t WHERE k > 'two' AND j = 'ten'""")
