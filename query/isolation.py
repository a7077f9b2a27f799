"""Every read restricted to the caller's team, in one place (docs/teams.md has the why).

Two parts, both applied by `query/reader.py`, the one way the query service reaches ClickHouse:

1. **A filter ClickHouse applies to every read of a tenant table.** Each query carries the setting
   ``additional_table_filters = {'<db>.otel_logs': 'Tenant = ''team''', ...}`` for every table with a Tenant
   column (Maple's tables, local and Distributed names, and a team's own source tables). ClickHouse adds
   the filter wherever the table is read in the statement: the outer query, subqueries, scalar subqueries,
   `IN (SELECT ...)`, joins, CTEs, UNION branches, `view()`. A reader without a team filters every tenant
   table to nothing, so no code path reads rows without naming a team.
2. **What a statement may read, decided by ClickHouse's own parser** (`EXPLAIN AST`, which parses without
   reading anything). The filter covers the tables it names; a statement written by a user (the SQL
   endpoint, a source's expressions) could still name other things: ``system.query_log`` (other teams'
   query texts), ``merge()`` (which reads tables without the filter: checked), ``remote()``, a dictionary.
   `check_statement` walks the parsed tree and lets through only the team's tables, ``system.one``, a few
   generator table functions and CTE names, and refuses dictionary and join-table functions and
   ``IN <table>``. Parsing with ClickHouse itself leaves no room for a parser that reads the text
   differently from the server.

Why not ClickHouse row policies per team: the embedded engine (chDB) runs every query as its one built-in
user and refuses CREATE USER and CREATE ROW POLICY (no access storage; checked on 26.9: ACCESS_DENIED), and on
a server they would need a ClickHouse user per team plus credentials to create them. The filter setting works
the same on both, per query, with nothing to provision.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from maple.schema import LOCAL_SUFFIX, TENANT_COLUMN, TENANT_TABLES
from maple.tenants import check as check_tenant
from query.errors import ApiError
from query.sqlguard import FORBIDDEN_FUNCTIONS, tokenize

# Table functions that generate rows and read nothing.
ALLOWED_TABLE_FUNCTIONS = frozenset({"numbers", "numbers_mt", "zeros", "zeros_mt", "generate_series",
                                     "generateseries", "values", "null"})
# Functions that read tables or dictionaries by name, or files: not through the filter.
FORBIDDEN_FUNCTION_PREFIXES = ("dict", "joinget")
IN_FUNCTIONS = frozenset({"in", "notin", "globalin", "globalnotin", "nullin", "notnullin", "globalnullin",
                          "globalnotnullin"})
ALWAYS_ALLOWED_TABLES = frozenset({"system.one"})
_SHOW_FORMS = (
    re.compile(r"SHOW (?:FULL )?TABLES(?: (?:FROM|IN) \S+)?(?: (?:NOT )?I?LIKE '[^']*')?(?: LIMIT \d+)?", re.I),
    re.compile(r"SHOW DATABASES(?: (?:NOT )?I?LIKE '[^']*')?(?: LIMIT \d+)?", re.I),
    re.compile(r"SHOW CREATE (?:TABLE )?\S+", re.I),
    re.compile(r"SHOW (?:FULL )?COLUMNS (?:FROM|IN) \S+(?: (?:FROM|IN) \S+)?(?: (?:NOT )?I?LIKE '[^']*')?", re.I),
)


def literal(text: str) -> str:
    """A ClickHouse string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def table_filters(database: str, tenant: str | None, extra: Iterable[str] = ()) -> str:
    """The additional_table_filters value for `tenant` (None: every tenant table filtered to nothing).

    `extra` names more tables (`db.table`) with a Tenant column, a team's own source tables."""
    condition = "0" if tenant is None else f"{TENANT_COLUMN} = {literal(check_tenant(tenant))}"
    names = [f"{database}.{t}{suffix}" for t in TENANT_TABLES for suffix in ("", LOCAL_SUFFIX)]
    names += [name for name in extra if name not in names]
    return "{" + ", ".join(f"{literal(name)}: {literal(condition)}" for name in names) + "}"


def _fail(message: str) -> ApiError:
    return ApiError(400, "invalid_sql", message, field="sql")


def _forbidden(what: str) -> ApiError:
    return ApiError(403, "forbidden", f"{what} is outside your team's data: a statement may read the tables of "
                                      "your team (Maple's otel_* tables and your sources' tables) and system.one",
                    field="sql")


@dataclass
class Node:
    kind: str
    text: str
    children: list[Node] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The node's name without its alias and child count ("Function in (children 1)" -> "in")."""
        text = re.sub(r" \(children \d+\)$", "", self.text)
        return re.sub(r" \(alias .*\)$", "", text)


def parse_ast(dump: str) -> list[Node]:
    """ClickHouse's EXPLAIN AST text (one node a line, indented one space per level) as trees."""
    roots: list[Node] = []
    stack: list[tuple[int, Node]] = []
    for line in dump.splitlines():
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip(" "))
        kind, _, text = line.strip().partition(" ")
        node = Node(kind, text)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if stack:
            stack[-1][1].children.append(node)
        else:
            roots.append(node)
        stack.append((depth, node))
    return roots


@dataclass(frozen=True)
class Scope:
    """What a team's statement may read: `database`'s tenant tables, the team's source tables (`db.table`),
    and the tables that exist in `database` (an unqualified CTE name must not be one of them)."""

    database: str
    source_tables: frozenset[str] = frozenset()
    existing: frozenset[str] = frozenset()

    def allowed(self, name: str) -> bool:
        database, dot, table = name.rpartition(".")
        if not dot:
            database, table = self.database, name
        qualified = f"{database}.{table}"
        if qualified in ALWAYS_ALLOWED_TABLES or qualified in self.source_tables:
            return True
        return database == self.database and table.removesuffix(LOCAL_SUFFIX) in TENANT_TABLES


def cte_names(sql: str) -> set[str]:
    """Names defined by `WITH name AS (...)` (and `, name AS (...)`) anywhere in the statement."""
    tokens = tokenize(sql)
    names = set()
    for i in range(1, len(tokens) - 2):
        if (tokens[i + 1].text.upper() == "AS" and tokens[i + 2].text == "(" and tokens[i - 1].text.upper() in
                ("WITH", ",") and tokens[i].kind in ("word", "ident")):
            names.add(tokens[i].text.strip("`\""))
    return names


def check_tokens(sql: str) -> None:
    """What must be refused before ClickHouse parses the statement: identifiers with control characters
    (they would break the parser's one-node-a-line dump) and SHOW statements other than the plain forms."""
    tokens = tokenize(sql)
    for token in tokens:
        if token.kind == "ident" and any(ord(c) < 32 for c in token.text):
            raise _fail("an identifier with a control character (newline, tab...) is not accepted")
    if tokens and tokens[0].text.upper() == "SHOW":
        text = " ".join(t.text for t in tokens if t.text != ";")
        text = re.sub(r"\s+", " ", text).replace(" . ", ".")
        if not any(form.fullmatch(text) for form in _SHOW_FORMS):
            raise ApiError(403, "forbidden", "of the SHOW statements only SHOW TABLES, SHOW DATABASES, SHOW COLUMNS "
                                             "and SHOW CREATE TABLE are accepted", field="sql")


def check_tree(roots: list[Node], scope: Scope, ctes: set[str]) -> None:
    """Refuse (403) a parsed statement that would read anything but the team's tables."""
    for root in roots:
        _walk(root, None, scope, ctes)


def _walk(node: Node, parent: Node | None, scope: Scope, ctes: set[str]) -> None:
    kind = node.kind
    if kind == "TableIdentifier":
        name = node.name
        if not scope.allowed(name):
            is_cte = "." not in name and name in ctes and name not in scope.existing
            if not is_cte:
                raise _forbidden(f"the table {name}")
    elif kind == "Function":
        function = node.name.split(" ", 1)[0]
        lower = function.lower()
        if parent is not None and parent.kind == "TableExpression":
            if lower not in ALLOWED_TABLE_FUNCTIONS:
                raise _forbidden(f"the table function {function}()")
        elif lower in FORBIDDEN_FUNCTIONS or lower.startswith(FORBIDDEN_FUNCTION_PREFIXES):
            raise _forbidden(f"the function {function}()")
        if lower in IN_FUNCTIONS:
            args = node.children[0].children if node.children else []
            if len(args) == 2 and args[1].kind == "Identifier":
                raise _fail(f"IN {args[1].name} names a table or a column as a set: write IN (SELECT ...)")
    elif kind == "Set" and (parent is None or parent.kind != "Explain"):
        raise _fail("a SETTINGS clause is not accepted")
    for child in node.children:
        _walk(child, node, scope, ctes)


EXPLAIN_AST = "EXPLAIN AST "
