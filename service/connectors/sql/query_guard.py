"""The text check of a query source (docs/spec.md §7, "Query sources"): one SELECT or WITH statement that neither
writes nor changes the session, or QueryRefused.

This is the first of three layers and the weakest: a function can do anything its body says, whatever
the text calling it looks like. The guarantees are the runtime ones (`postgresql/source.py`, `mysql/source.py`):
every run reads on a fresh connection inside one READ ONLY transaction that is never committed, and a
PostgreSQL run fails if a session setting changed. This module refuses what is plainly wrong early and
with a clear message, so the database never sees it:

- more than one statement, or a statement that is not SELECT/WITH;
- unbalanced parentheses (the query runs wrapped as `SELECT … FROM (<query>) AS q`, so a `)` too many
  would let text escape the subquery);
- `INTO` (MySQL `INTO OUTFILE`/`DUMPFILE`/`@var`, PostgreSQL `SELECT INTO`), data-modifying words
  (`INSERT`, `UPDATE`, `DELETE`, `MERGE`: PostgreSQL's writable CTEs, `FOR UPDATE`), `SET`, MySQL `:=`;
- functions that read or write server files, reach other servers, run SQL given as text or change the
  session (`set_config`, `pg_read_file`, `lo_export`, `dblink…`, `load_file`…), named as any identifier,
  quoted or not, qualified or not;
- what a lexer could read two ways: MySQL executable comments `/*! … */`, PostgreSQL `U&"…"` escapes,
  and MySQL strings are read both with and without backslash escapes (`NO_BACKSLASH_ESCAPES`), and the
  query must pass both readings.

Comments, string literals and quoted identifiers are tokenized as the server does, so
`SELECT 'set_config' AS x` and `-- DELETE` in a comment are fine.
"""

import re
from dataclasses import dataclass
from typing import Literal

from schemas.messages import (
    QUERY_EMPTY,
    QUERY_EXECUTABLE_COMMENT,
    QUERY_MANY_STATEMENTS,
    QUERY_NOT_SELECT,
    QUERY_REFUSED,
    QUERY_SETS_SESSION,
    QUERY_SETS_VARIABLE,
    QUERY_UNBALANCED,
    QUERY_UNCLOSED_COMMENT,
    QUERY_UNCLOSED_QUOTE,
    QUERY_UNICODE_ESCAPE,
    query_calls,
    query_refused,
    query_writes,
)
from service.sync.errors import AccessDenied

Dialect = Literal["postgresql", "mysql"]

STATEMENTS = frozenset({"select", "with"})
"""The first word of an allowed query (after any opening parentheses)."""
WRITING_WORDS = frozenset({"into", "insert", "update", "delete", "merge"})
"""Words that cannot appear in a read-only SELECT/WITH except to write (as bare words; quote a column so named)."""
DENIED_FUNCTIONS = frozenset({
    # PostgreSQL: the session, server files, large objects that touch files, other servers, SQL as text.
    "set_config", "pg_read_file", "pg_read_binary_file", "pg_stat_file", "pg_file_write", "pg_file_rename",
    "pg_file_unlink", "pg_file_sync", "pg_logdir_ls", "lo_import", "lo_export", "lo_from_bytea", "lo_put",
    "lo_create", "lo_creat", "lo_unlink", "lo_truncate", "lowrite", "pg_reload_conf", "pg_rotate_logfile",
    "pg_terminate_backend", "pg_cancel_backend", "pg_promote", "pg_switch_wal", "pg_create_restore_point",
    "pg_logical_emit_message", "pg_notify", "nextval", "setval", "query_to_xml", "query_to_xmlschema",
    "query_to_xml_and_xmlschema", "cursor_to_xml", "ts_stat", "pg_import_system_collations",
    # MySQL/MariaDB: server files and the usual command-running UDFs.
    "load_file", "sys_exec", "sys_eval",
})
DENIED_PREFIXES = ("pg_ls_", "dblink", "pg_advisory", "pg_create_", "pg_drop_replication", "pg_replication_")


class QueryRefused(AccessDenied):
    reason = QUERY_REFUSED


@dataclass(frozen=True)
class Token:
    kind: Literal["word", "ident", "string", "param", "op"]
    text: str
    """A word lower-cased, an identifier unquoted and lower-cased, an operator character as is."""
    start: int
    end: int


_WORD = re.compile(r"[\w$]+")
_DOLLAR_TAG = re.compile(r"\$([A-Za-z_\x80-\U0010ffff][\w]*)?\$")
_PARAM = re.compile(r"\$\d+")


def _refuse(why: str) -> QueryRefused:
    return QueryRefused(query_refused(why))


class _Lexer:
    """Splits SQL into tokens the way `dialect`'s server does, dropping whitespace and comments."""

    def __init__(self, sql: str, dialect: Dialect, *, backslash_escapes: bool) -> None:
        self.sql, self.dialect, self.backslash = sql, dialect, backslash_escapes
        self.pos = 0
        self.tokens: list[Token] = []

    def run(self) -> list[Token]:
        sql = self.sql
        while self.pos < len(sql):
            char = sql[self.pos]
            if char.isspace():
                self.pos += 1
            elif sql.startswith("--", self.pos) and self._dash_comment():
                self._skip_line()
            elif char == "#" and self.dialect == "mysql":
                self._skip_line()
            elif sql.startswith("/*", self.pos):
                self._block_comment()
            elif char == "'":
                self._quoted("'", "string", escapes=self.backslash and self.dialect == "mysql")
            elif char == '"':
                self._quoted('"', "ident", escapes=self.backslash and self.dialect == "mysql")
            elif char == "`" and self.dialect == "mysql":
                self._quoted("`", "ident", escapes=False)
            elif char == "$" and self.dialect == "postgresql":
                self._dollar()
            elif _WORD.match(sql, self.pos):
                self._word()
            else:
                self.tokens.append(Token("op", char, self.pos, self.pos + 1))
                self.pos += 1
        return self.tokens

    def _dash_comment(self) -> bool:
        """MySQL starts a `--` comment only before whitespace or a control character (`--1` is minus minus one)."""
        if self.dialect == "postgresql":
            return True
        after = self.sql[self.pos + 2:self.pos + 3]
        return after == "" or after.isspace() or ord(after) < 32

    def _skip_line(self) -> None:
        end = self.sql.find("\n", self.pos)
        self.pos = len(self.sql) if end < 0 else end + 1

    def _block_comment(self) -> None:
        start = self.pos
        if self.dialect == "mysql" and re.match(r"/\*[Mm]?!", self.sql[start:start + 4]):
            raise _refuse(QUERY_EXECUTABLE_COMMENT)
        depth, self.pos = 1, start + 2
        nested = self.dialect == "postgresql"
        while depth:
            if self.pos >= len(self.sql):
                raise _refuse(QUERY_UNCLOSED_COMMENT)
            if self.sql.startswith("*/", self.pos):
                depth, self.pos = depth - 1, self.pos + 2
            elif nested and self.sql.startswith("/*", self.pos):
                depth, self.pos = depth + 1, self.pos + 2
            else:
                self.pos += 1

    def _quoted(self, quote: str, kind: Literal["string", "ident"], *, escapes: bool) -> None:
        start, pos, parts = self.pos, self.pos + 1, []
        while True:
            if pos >= len(self.sql):
                raise _refuse(QUERY_UNCLOSED_QUOTE)
            char = self.sql[pos]
            if escapes and char == "\\":
                parts.append(self.sql[pos + 1:pos + 2])
                pos += 2
            elif char == quote and self.sql.startswith(quote * 2, pos):
                parts.append(quote)
                pos += 2
            elif char == quote:
                break
            else:
                parts.append(char)
                pos += 1
        self.pos = pos + 1
        self.tokens.append(Token(kind, "".join(parts).lower(), start, self.pos))

    def _escape_string(self) -> None:
        """PostgreSQL `E'…'`: backslash escapes whatever standard_conforming_strings says."""
        self._quoted("'", "string", escapes=True)

    def _dollar(self) -> None:
        sql, start = self.sql, self.pos
        param = _PARAM.match(sql, start)
        if param:
            self.tokens.append(Token("param", param.group(), start, param.end()))
            self.pos = param.end()
            return
        tag = _DOLLAR_TAG.match(sql, start)
        if tag is None:
            self.tokens.append(Token("op", "$", start, start + 1))
            self.pos += 1
            return
        end = sql.find(tag.group(), tag.end())
        if end < 0:
            raise _refuse(QUERY_UNCLOSED_QUOTE)
        self.pos = end + len(tag.group())
        self.tokens.append(Token("string", sql[tag.end():end].lower(), start, self.pos))

    def _word(self) -> None:
        match = _WORD.match(self.sql, self.pos)
        assert match is not None
        word, end = match.group(), match.end()
        following = self.sql[end:end + 2]
        if self.dialect == "postgresql" and word.lower() == "u" and following in ("&'", '&"'):
            raise _refuse(QUERY_UNICODE_ESCAPE)
        self.tokens.append(Token("word", word.lower(), self.pos, end))
        self.pos = end
        if self.dialect == "postgresql" and word.lower() == "e" and following[:1] == "'":
            self._escape_string()


def _check(tokens: list[Token], dialect: Dialect) -> int:
    """Refuse what the module docstring lists; the end offset of the statement (trailing `;` dropped)."""
    while tokens and tokens[-1].kind == "op" and tokens[-1].text == ";":
        tokens = tokens[:-1]
    if not tokens:
        raise _refuse(QUERY_EMPTY)
    first = next((t for t in tokens if not (t.kind == "op" and t.text == "(")), None)
    if first is None or first.kind != "word" or first.text not in STATEMENTS:
        raise _refuse(QUERY_NOT_SELECT)
    depth = 0
    for index, token in enumerate(tokens):
        previous = tokens[index - 1] if index else None
        if token.kind == "op":
            depth = _operator(token, previous, depth, dialect)
        else:
            _name(token, previous)
    if depth != 0:
        raise _refuse(QUERY_UNBALANCED)
    return tokens[-1].end


def _operator(token: Token, previous: Token | None, depth: int, dialect: Dialect) -> int:
    """Refuse a second statement, an unbalanced `)` or MySQL's `:=`; the parenthesis depth after `token`."""
    if token.text == ";":
        raise _refuse(QUERY_MANY_STATEMENTS)
    if token.text == "(":
        return depth + 1
    if token.text == ")":
        if depth == 0:
            raise _refuse(QUERY_UNBALANCED)
        return depth - 1
    if (dialect == "mysql" and token.text == "=" and previous is not None
            and previous.kind == "op" and previous.text == ":" and previous.end == token.start):
        raise _refuse(QUERY_SETS_VARIABLE)
    return depth


def _name(token: Token, previous: Token | None) -> None:
    """Refuse a writing keyword, `SET` (but `CHARACTER SET`) and the denied functions."""
    if token.kind == "word" and token.text in WRITING_WORDS:
        raise _refuse(query_writes(token.text.upper()))
    if token.kind == "word" and token.text == "set" and not (
            previous is not None and previous.kind == "word" and previous.text == "character"):
        raise _refuse(QUERY_SETS_SESSION)
    if token.kind in ("word", "ident") and (
            token.text in DENIED_FUNCTIONS or token.text.startswith(DENIED_PREFIXES)):
        raise _refuse(query_calls(token.text))


def checked_query(sql: str, dialect: Dialect) -> str:
    """`sql` as it may run (without trailing `;` or comments), or QueryRefused saying why not."""
    readings = (True, False) if dialect == "mysql" else (False,)
    ends = {_check(_Lexer(sql, dialect, backslash_escapes=b).run(), dialect) for b in readings}
    return sql[:max(ends)]
