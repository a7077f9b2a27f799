"""What the SQL endpoint lets through: one SELECT, WITH, SHOW, DESCRIBE or EXPLAIN statement, and none of
the clauses that would let it lift its own limits or reach outside ClickHouse's tables.

A small lexer splits the statement into tokens (skipping string literals, quoted identifiers and comments),
so a keyword inside a string does not count and a keyword hidden behind a comment does. ClickHouse then
runs the statement read-only (readonly=2) with the endpoint's limits: this check keeps out what read-only
mode allows but the API must not (SETTINGS clauses, FORMAT, INTO OUTFILE, table functions that read
files, URLs or other servers).
"""

from __future__ import annotations

from dataclasses import dataclass

from query.errors import ApiError

FIRST_WORDS = {"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN"}
FORBIDDEN_WORDS = {"SETTINGS": "a SETTINGS clause (the endpoint's limits are fixed)",
                   "FORMAT": "a FORMAT clause (results are JSON)", "OUTFILE": "INTO OUTFILE",
                   "INFILE": "FROM INFILE"}
# Table functions that read outside ClickHouse's own tables (files, URLs, other databases and servers).
FORBIDDEN_FUNCTIONS = {
    "file", "url", "urlcluster", "s3", "s3cluster", "gcs", "azureblobstorage", "azureblobstoragecluster", "hdfs",
    "hdfscluster", "remote", "remotesecure", "cluster", "clusterallreplicas", "mysql", "postgresql", "sqlite",
    "mongodb", "redis", "jdbc", "odbc", "executable", "input", "iceberg", "icebergs3", "icebergazure",
    "iceberghdfs", "icebergcluster", "deltalake", "deltalakecluster", "hudi", "hudicluster", "dictionary",
    "filecluster", "ytsaurus", "arrowflight", "loop", "merge", "mergetreeindex", "mergetreeprojection",
    "fuzzjson", "fuzzquery", "python",
}


@dataclass(frozen=True)
class Token:
    kind: str   # word, number, string, ident, punct
    text: str
    pos: int


def _fail(message: str, position: int | None = None) -> ApiError:
    return ApiError(400, "invalid_sql", message, field="sql", position=position)


def tokenize(sql: str) -> list[Token]:
    out: list[Token] = []
    i, n = 0, len(sql)
    while i < n:
        char = sql[i]
        if char.isspace():
            i += 1
        elif sql.startswith("--", i) or char == "#":
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            if end < 0:
                raise _fail("unterminated /* comment", i)
            i = end + 2
        elif char in "'\"`":
            j = i + 1
            while j < n and sql[j] != char:
                j += 2 if sql[j] == "\\" else 1
            if j >= n:
                raise _fail(f"unterminated {char} quote", i)
            out.append(Token("string" if char == "'" else "ident", sql[i:j + 1], i))
            i = j + 1
        elif char.isalpha() or char == "_":
            j = i
            while j < n and (sql[j].isalnum() or sql[j] in "_$"):
                j += 1
            out.append(Token("word", sql[i:j], i))
            i = j
        elif char.isdigit():
            j = i
            while j < n and (sql[j].isalnum() or sql[j] in "._"):
                j += 1
            out.append(Token("number", sql[i:j], i))
            i = j
        else:
            out.append(Token("punct", char, i))
            i += 1
    return out


def check(sql: str) -> str:
    """The statement without a trailing ';', or ApiError(400) naming why it is not accepted."""
    tokens = tokenize(sql)
    if not tokens:
        raise _fail("sql: empty statement")
    while tokens and tokens[-1].text == ";":
        tokens.pop()
    if not tokens:
        raise _fail("sql: empty statement")
    first = tokens[0]
    if first.kind != "word" or first.text.upper() not in FIRST_WORDS:
        raise _fail(f"only SELECT, WITH, SHOW, DESCRIBE and EXPLAIN statements are accepted, not {first.text!r}",
                    first.pos)
    for index, token in enumerate(tokens):
        if token.text == ";":
            raise _fail("one statement per request: remove the ';' and what follows", token.pos)
        if token.kind != "word":
            continue
        upper = token.text.upper()
        if upper in FORBIDDEN_WORDS:
            raise _fail(f"{FORBIDDEN_WORDS[upper]} is not accepted", token.pos)
        following = tokens[index + 1] if index + 1 < len(tokens) else None
        if following is not None and following.text == "(" and token.text.lower() in FORBIDDEN_FUNCTIONS:
            raise _fail(f"the function {token.text}() reads outside ClickHouse's tables and is not accepted "
                        "(quote the name with backquotes if it is a column)", token.pos)
    end = tokens[-1].pos + len(tokens[-1].text)
    return sql[:end].strip()
