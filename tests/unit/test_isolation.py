"""The pure parts of the per-team restriction: the filter setting, the parsed-tree check and the token
rules (tests/integration/test_isolation.py runs them against ClickHouse's real parser and data)."""

from __future__ import annotations

import pytest

from query import isolation
from query.errors import ApiError

SCOPE = isolation.Scope("otel", frozenset({"legacy.app_logs"}), frozenset({"otel_logs", "maple_schema_versions"}))


def test_the_filter_names_every_tenant_table_and_quotes_the_tenant() -> None:
    value = isolation.table_filters("otel", "team-a", ["legacy.app_logs"])
    assert value.startswith(r"{'otel.otel_logs': 'Tenant = \'team-a\'', 'otel.otel_logs_local': ")
    assert value.count("Tenant = ") == 17 and "'legacy.app_logs'" in value  # 8 tables x 2 names + the source
    assert "'0'" in isolation.table_filters("otel", None) and "Tenant" not in isolation.table_filters("otel", None)
    with pytest.raises(ValueError, match="not a tenant name"):
        isolation.table_filters("otel", "x' OR 1 --")


DUMP = """SelectWithUnionQuery (children 1)
 ExpressionList (children 1)
  SelectQuery (children 2)
   ExpressionList (children 1)
    Function in (children 1)
     ExpressionList (children 2)
      Identifier Body
      Subquery (children 1)
       SelectWithUnionQuery (children 1)
        ExpressionList (children 1)
         SelectQuery (children 2)
          TablesInSelectQuery (children 1)
           TablesInSelectQueryElement (children 1)
            TableExpression (children 1)
             TableIdentifier {inner}
   TablesInSelectQuery (children 1)
    TablesInSelectQueryElement (children 1)
     TableExpression (children 1)
      {outer}
"""


def _check(inner: str = "otel_logs", outer: str = "TableIdentifier otel.otel_traces (alias t)",
           ctes: set[str] | None = None) -> None:
    isolation.check_tree(isolation.parse_ast(DUMP.format(inner=inner, outer=outer)), SCOPE, ctes or set())


def test_the_tree_check_allows_the_teams_tables_only() -> None:
    _check()
    _check("legacy.app_logs", "Function numbers (alias n) (children 1)")
    _check("system.one", "TableIdentifier otel.otel_logs_local")
    _check("recent", ctes={"recent"})  # a CTE name that is no table
    for inner, outer, what in [("system.query_log", "TableIdentifier otel_logs", "system.query_log"),
                               ("otel_logs", "Function merge (children 1)", "merge()"),
                               ("otel_logs", "Function remote (children 1)", "remote()"),
                               ("maple_schema_versions", "TableIdentifier otel_logs", "maple_schema_versions"),
                               ("other.otel_logs", "TableIdentifier otel_logs", "other.otel_logs")]:
        with pytest.raises(ApiError) as refused:
            _check(inner, outer, {"maple_schema_versions"})
        assert refused.value.status == 403 and what in refused.value.message
    dictionary = DUMP.format(inner="otel_logs", outer="TableIdentifier otel_logs").replace(
        "Function in (children 1)", "Function dictGetString (children 1)")
    with pytest.raises(ApiError, match="dictGetString"):
        isolation.check_tree(isolation.parse_ast(dictionary), SCOPE, set())
    tree = isolation.parse_ast("Function in (children 1)\n ExpressionList (children 2)\n  Literal 'x'\n"
                               "  Identifier system.query_log")
    with pytest.raises(ApiError, match="IN system.query_log"):
        isolation.check_tree(tree, SCOPE, set())
    settings = isolation.parse_ast("SelectWithUnionQuery\n ExpressionList\n  SelectQuery\n   Set")
    with pytest.raises(ApiError, match="SETTINGS"):
        isolation.check_tree(settings, SCOPE, set())
    isolation.check_tree(isolation.parse_ast("Explain EXPLAIN (children 2)\n Set\n SelectWithUnionQuery"), SCOPE,
                         set())


def test_tokens_refuse_control_characters_and_all_but_the_plain_show_forms() -> None:
    for ok in ("SHOW TABLES", "show tables like 'otel%'", "SHOW DATABASES", "SHOW CREATE TABLE otel_logs",
               "SHOW CREATE otel.otel_logs", "SHOW COLUMNS FROM otel_logs", "SELECT `a b` FROM otel_logs"):
        isolation.check_tokens(ok)
    for bad in ("SHOW PROCESSLIST", "SHOW USERS", "SHOW GRANTS", "SHOW SETTINGS LIKE '%'",
                "SHOW COLUMNS FROM otel_logs WHERE (SELECT 1) = 1", "SHOW TABLES FROM system WHERE 1",
                "SELECT 1 FROM `a\nb`", "SELECT 1 AS `x\ty`"):
        with pytest.raises(ApiError):
            isolation.check_tokens(bad)


def test_cte_names() -> None:
    assert isolation.cte_names("WITH a AS (SELECT 1), `b c` AS (SELECT 2) SELECT * FROM a, `b c`") == {"a", "b c"}
    assert isolation.cte_names("WITH 1 AS x SELECT x AS (y)") == set()


def test_a_connection_that_drops_the_filter_is_refused() -> None:
    """A server (or client library) that drops additional_table_filters, which no server here does: stood in
    for by an object answering what such a server would."""
    from query.reader import _check_filters

    class Dropping:
        closed = False

        def query(self, _sql: str, settings: dict[str, object]) -> object:
            assert "maple_probe.filter" in str(settings["additional_table_filters"])
            return type("Result", (), {"result_rows": [["{}"]]})()

        def close(self) -> None:
            self.closed = True

    client = Dropping()
    with pytest.raises(ApiError) as refused:
        _check_filters(client)  # type: ignore[arg-type]
    assert refused.value.status == 503 and "per-team filter" in refused.value.message and client.closed
