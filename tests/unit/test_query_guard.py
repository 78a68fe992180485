"""The text check of query sources: what it refuses, and that quotes and comments do not fool it either way."""

import pytest

from service.connectors.sql.query_guard import QueryRefused, checked_query
from service.sync.errors import ErrorCode

ALLOWED = [
    ("SELECT 1", "SELECT 1"),
    ("select id, name from t where id > 3;", "select id, name from t where id > 3"),
    ("SELECT 1; ;  -- trailing comment", "SELECT 1"),
    ("SELECT 1 /* a comment */", "SELECT 1"),
    ("WITH x AS (SELECT 1 AS a) SELECT a FROM x", "WITH x AS (SELECT 1 AS a) SELECT a FROM x"),
    ("(SELECT 1) UNION (SELECT 2)", "(SELECT 1) UNION (SELECT 2)"),
    ("SELECT 'set_config' AS x", "SELECT 'set_config' AS x"),
    ("SELECT 'a; DELETE FROM t' AS x", "SELECT 'a; DELETE FROM t' AS x"),
    ("SELECT 1 -- ; DELETE FROM t\n FROM t", "SELECT 1 -- ; DELETE FROM t\n FROM t"),
    ("SELECT updated_at, deleted, offset_x FROM t", "SELECT updated_at, deleted, offset_x FROM t"),
    ("SELECT current_setting('search_path')", "SELECT current_setting('search_path')"),
]


@pytest.mark.parametrize(("sql", "kept"), ALLOWED)
@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
def test_plain_reads_pass_and_lose_only_their_trailing_semicolons_and_comments(sql: str, kept: str,
                                                                               dialect: str) -> None:
    assert checked_query(sql, dialect) == kept  # type: ignore[arg-type]


REFUSED_BOTH = [
    "DELETE FROM t",
    "UPDATE t SET a = 1",
    "SELECT 1; DELETE FROM t",
    "SELECT 1; SELECT 2",
    "SET search_path = x",
    "COPY t TO PROGRAM 'id'",
    "COPY (SELECT 1) TO '/tmp/x'",
    "SELECT set_config('default_transaction_read_only', 'off', false)",
    "SELECT pg_catalog.set_config('a.b', 'c', false)",
    'SELECT "set_config"(\'a.b\', \'c\', false)',
    "SELECT set_config /* hidden */ ('a.b', 'c', false)",
    "SELECT SET_CONFIG('a.b', 'c', false)",
    "SELECT pg_read_file('/etc/passwd')",
    "SELECT * FROM pg_read_binary_file('/etc/passwd')",
    "SELECT pg_ls_dir('.')",
    "SELECT * FROM pg_stat_file('pg_hba.conf')",
    "SELECT lo_import('/etc/passwd')",
    "SELECT lo_export(1, '/tmp/x')",
    "SELECT * FROM dblink('dbname=batchsync', 'SELECT 1') AS t(a int)",
    "SELECT dblink_exec('dbname=x', 'DELETE FROM t')",
    "SELECT query_to_xml('SELECT set_config(1)', true, true, '')",
    "SELECT 1 INTO OUTFILE '/tmp/x'",
    "SELECT 1 INTO DUMPFILE '/tmp/x'",
    "SELECT 1 INTO @v",
    "SELECT * INTO new_table FROM t",
    "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
    "SELECT * FROM t FOR UPDATE",
    "SELECT load_file('/etc/passwd')",
    "SELECT 1) AS q; DELETE FROM t; SELECT * FROM (SELECT 1",
    "SELECT 1) AS q INTO OUTFILE '/tmp/x' -- ",
    "SELECT (1",
    "SELECT 'unterminated",
    "SELECT 1 /* unterminated",
    "",
    "  ;  ",
    "-- nothing but a comment",
    "VALUES (1)",
    "EXPLAIN ANALYZE DELETE FROM t",
    "CALL p()",
]


@pytest.mark.parametrize("sql", REFUSED_BOTH)
@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
def test_writes_session_changes_files_and_several_statements_are_refused(sql: str, dialect: str) -> None:
    with pytest.raises(QueryRefused) as refused:
        checked_query(sql, dialect)  # type: ignore[arg-type]
    assert refused.value.code == ErrorCode.ACCESS_DENIED
    assert refused.value.reason.startswith("查询语句不被允许：")


@pytest.mark.parametrize("sql", [
    # A backslash does not end a PostgreSQL string (standard_conforming_strings is on for sources) ...
    r"SELECT 'a\'; DELETE FROM t; -- '",
    # ... but it escapes a quote in an E'' string, so the next quote ends the string and code follows.
    r"SELECT E'\''; DELETE FROM t; --'",
    "SELECT $$ ' $$; DELETE FROM t",
    "SELECT $tag$ $$ ; $tag$; DELETE FROM t",
    'SELECT U&"\\0073et_config"(\'a.b\', \'c\', false)',
    "SELECT 1 /* nested /* comment */ ; DELETE FROM t; */ ; DELETE FROM t",
])
def test_postgresql_lexing_matches_the_server(sql: str) -> None:
    with pytest.raises(QueryRefused):
        checked_query(sql, "postgresql")


@pytest.mark.parametrize("sql", [
    "SELECT $$ ; DELETE FROM t $$ AS x",
    "SELECT $1::text",
    "SELECT 1 /* nested /* comment */ ; DELETE */",
    r"SELECT E'it\'s; DELETE' AS x",
    "SELECT a$b FROM t",
    "SELECT 1 # 2",
])
def test_postgresql_strings_and_comments_hide_nothing_that_runs(sql: str) -> None:
    checked_query(sql, "postgresql")


@pytest.mark.parametrize("sql", [
    # Read with and without NO_BACKSLASH_ESCAPES: one reading sees the INTO as code.
    r"SELECT 'a\' INTO OUTFILE '/tmp/x' -- '",
    r"SELECT 'a\\' INTO OUTFILE '/tmp/x' -- '",
    "SELECT 1 /*! INTO OUTFILE '/tmp/x' */",
    "SELECT 1 /*M! INTO OUTFILE '/tmp/x' */",
    "SELECT 1 --1; DELETE FROM t",
    "SELECT @x := 1",
    "SELECT `load_file`('/etc/passwd')",
    "SELECT 1 # comment\n; DELETE FROM t",
    "SELECT 1 /* not nested /* */ ; DELETE FROM t",
])
def test_mysql_lexing_matches_the_server_in_every_mode(sql: str) -> None:
    with pytest.raises(QueryRefused):
        checked_query(sql, "mysql")


@pytest.mark.parametrize("sql", [
    "SELECT 1 # ; DELETE FROM t",
    "SELECT 1 -- ; DELETE FROM t",
    "SELECT 'it''s' AS x",
    "SELECT \"DELETE\" AS x",
    "SELECT CAST(a AS CHAR CHARACTER SET utf8mb4) FROM t",
    "SELECT 1 /*+ MAX_EXECUTION_TIME(1000) */",
    "SELECT a FROM t WHERE b LIKE '%x%'",
])
def test_mysql_comments_strings_and_charsets_pass(sql: str) -> None:
    checked_query(sql, "mysql")
