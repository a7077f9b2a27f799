"""Compile a parsed query string (luqum tree) into a ClickHouse boolean expression with bound parameters.

Every value from the query string becomes a parameter (``{q0:String}``); the SQL text holds only the
source's expressions, operators and parameter names. Constructs:

===========================  ===============================================================================
``word``, ``"a phrase"``      free text in the body: ``hasToken(lower(body), ...)`` for each token (the lower(Body)
                              token index), plus a case-insensitive substring test when the text is not one token
``fo*``, ``f?o`` (free)       ``body ILIKE '%fo%'``: wildcards match anywhere in the body
``field:value``               equality (case-insensitive for level, kind, status; attributes match either map)
``field:"a b"``               equality with the phrase
``field:pay*``                ``LIKE`` (``*`` any run, ``?`` one character)
``field:/re/``                ``match(expr, 're')`` (RE2)
``field:>5``, ``>=``, ``<``   numeric comparison when the value is a number, else string comparison
``field:[a TO b]``, ``{}``    inclusive / exclusive range; ``*`` leaves an end open
``field:*``, ``_exists_:f``   the field exists (attribute key present, column not empty)
``a b``, ``a AND b``          both (implicit operator is AND)
``a OR b``, ``NOT a``, ``-a``  either, negation
``( ... )``, ``f:(a OR b)``   grouping; a field applies to every term of its group
===========================  ===============================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from luqum import tree as t

from query.errors import ApiError
from query.search.fields import Kind, Resolver, UnknownField
from query.search.parser import SearchSyntaxError, parse

EXISTS_FIELD = "_exists_"


@dataclass
class Compiled:
    sql: str
    params: dict[str, Any] = field(default_factory=dict)


def _ascii_lower(text: str) -> str:
    """ClickHouse's lower() changes ASCII letters only; the token index holds lower(Body)."""
    return "".join(c.lower() if c.isascii() else c for c in text)


def tokens(text: str) -> list[str]:
    """Split text as ClickHouse's token functions do: runs of ASCII letters/digits and non-ASCII characters."""
    out: list[str] = []
    current: list[str] = []
    for char in text:
        if char.isascii() and not char.isalnum():
            if current:
                out.append("".join(current))
                current = []
        else:
            current.append(char)
    if current:
        out.append("".join(current))
    return out


@dataclass(frozen=True)
class _Value:
    """A term's text after unescaping, with which characters are wildcards."""

    text: str
    wild: tuple[bool, ...]
    phrase: bool = False

    @property
    def has_wildcard(self) -> bool:
        return any(self.wild)

    @property
    def match_all(self) -> bool:
        return self.text == "*" and self.wild == (True,)

    def like(self, anywhere: bool = False) -> str:
        out = []
        for char, wild in zip(self.text, self.wild):
            if wild:
                out.append("%" if char == "*" else "_")
            elif char in "%_\\":
                out.append("\\" + char)
            else:
                out.append(char)
        pattern = "".join(out)
        if anywhere:
            starts = self.wild[0] and self.text[0] == "*"
            ends = self.wild[-1] and self.text[-1] == "*"
            pattern = ("" if starts else "%") + pattern + ("" if ends else "%")
        return pattern

    def number(self) -> float | None:
        try:
            value = float(self.text)
        except ValueError:
            return None
        return value if value == value and abs(value) != float("inf") else None


def _word_value(raw: str) -> _Value:
    text, wild, escaped = [], [], False
    for char in raw:
        if escaped:
            text.append(char)
            wild.append(False)
            escaped = False
        elif char == "\\":
            escaped = True
        else:
            text.append(char)
            wild.append(char in "*?")
    if escaped:
        text.append("\\")
        wild.append(False)
    return _Value("".join(text), tuple(wild))


def _phrase_value(raw: str) -> _Value:
    inner = raw[1:-1] if len(raw) >= 2 and raw[0] == raw[-1] == '"' else raw
    text, escaped = [], False
    for char in inner:
        if escaped:
            text.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        else:
            text.append(char)
    return _Value("".join(text), tuple(False for _ in text), phrase=True)


class Compiler:
    """One compilation: the resolver of the source, and the parameters bound so far (named prefix0, ...)."""

    def __init__(self, resolver: Resolver, prefix: str = "q") -> None:
        self.resolver = resolver
        self.prefix = prefix
        self.params: dict[str, Any] = {}

    def bind(self, value: Any, type_name: str = "String") -> str:
        name = f"{self.prefix}{len(self.params)}"
        self.params[name] = value
        return f"{{{name}:{type_name}}}"

    # -- errors ----------------------------------------------------------------------------------------

    @staticmethod
    def _fail(node: t.Item, message: str, code: str = "invalid_query") -> ApiError:
        return ApiError(400, code, message, field="q", position=getattr(node, "pos", None))

    # -- the tree --------------------------------------------------------------------------------------

    def compile(self, node: t.Item, field_name: str | None = None) -> str:
        if isinstance(node, (t.AndOperation, t.UnknownOperation)):
            return "(" + " AND ".join(self.compile(child, field_name) for child in node.children) + ")"
        if isinstance(node, t.OrOperation):
            return "(" + " OR ".join(self.compile(child, field_name) for child in node.children) + ")"
        if isinstance(node, (t.Not, t.Prohibit)):
            return f"NOT {self._paren(self.compile(node.a, field_name))}"
        if isinstance(node, t.Plus):
            return self.compile(node.a, field_name)
        if isinstance(node, (t.Group, t.FieldGroup)):
            return self.compile(node.expr, field_name)
        if isinstance(node, t.SearchField):
            if field_name is not None:
                raise self._fail(node, f"field {node.name!r} inside the group of field {field_name!r}: name one field")
            if isinstance(node.expr, t.SearchField):
                raise self._fail(node, f"{node.name}:{node.expr.name}: a field cannot hold another field; quote "
                                       "the value if it contains ':'")
            if node.name == EXISTS_FIELD:
                return self._exists(node)
            return self.compile(node.expr, node.name)
        if isinstance(node, (t.Word, t.Phrase, t.Regex, t.Range, t.From, t.To)):
            if field_name is None:
                return self._free_text(node)
            return self._field(node, field_name)
        if isinstance(node, t.Fuzzy):
            raise self._fail(node, "fuzzy terms (~) are not supported; use a wildcard such as conn*",
                             "not_supported")
        if isinstance(node, t.Proximity):
            raise self._fail(node, "proximity searches (\"...\"~N) are not supported", "not_supported")
        if isinstance(node, t.Boost):
            raise self._fail(node, "boosts (^) are not supported: results are ordered by time", "not_supported")
        raise self._fail(node, f"{type(node).__name__} is not supported in search", "not_supported")

    @staticmethod
    def _paren(sql: str) -> str:
        return sql if sql.startswith("(") and sql.endswith(")") else f"({sql})"

    # -- free text -------------------------------------------------------------------------------------

    def _free_text(self, node: t.Item) -> str:
        body = self.resolver.body
        if not body:
            raise self._fail(node, "this source has no body to search free text in; name a field (field:value)")
        if isinstance(node, (t.Range, t.From, t.To)):
            raise self._fail(node, "a range needs a field, e.g. duration:>100 or status:[500 TO 599]")
        if isinstance(node, t.Regex):
            return f"match({body}, {self.bind(node.value[1:-1])})"
        value = _phrase_value(node.value) if isinstance(node, t.Phrase) else _word_value(node.value)
        if value.match_all:
            return "1"
        if value.has_wildcard:
            return f"{body} ILIKE {self.bind(value.like(anywhere=True))}"
        words = tokens(value.text)
        parts = []
        for word in dict.fromkeys(_ascii_lower(w) for w in words):
            parts.append(f"hasToken(lower({body}), {self.bind(word)})")
        if len(words) != 1 or words[0] != value.text:
            # not a single token: the tokens narrow through the index, the substring makes it exact
            parts.append(f"positionCaseInsensitiveUTF8({body}, {self.bind(value.text)}) > 0")
        return parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"

    # -- fields ----------------------------------------------------------------------------------------

    def _resolve(self, node: t.Item, name: str) -> Any:
        try:
            return self.resolver.resolve(name)
        except UnknownField as exc:
            raise ApiError(400, "unknown_field", exc.reason, field="q", position=getattr(node, "pos", None)) from None

    def _exists(self, node: t.SearchField) -> str:
        target = node.expr
        if not isinstance(target, (t.Word, t.Phrase)):
            raise self._fail(node, "_exists_ takes a field name, e.g. _exists_:trace_id")
        name = _phrase_value(target.value).text if isinstance(target, t.Phrase) else _word_value(target.value).text
        return self._exists_sql(self._resolve(node, name))

    def _exists_sql(self, ref: Any) -> str:
        if ref.kind is Kind.ATTRIBUTE:
            key = self.bind(ref.key)
            return self._either([f"mapContains({m}, {key})" for m in ref.maps])
        if ref.kind in (Kind.NUMBER, Kind.DURATION_MS):
            return f"{ref.expr} != 0"
        return f"{ref.expr} != ''"

    @staticmethod
    def _either(parts: list[str]) -> str:
        return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"

    def _field(self, node: t.Item, name: str) -> str:
        ref = self._resolve(node, name)
        if isinstance(node, t.Range):
            return self._range(node, ref, node.low, node.include_low, node.high, node.include_high)
        if isinstance(node, t.From):
            return self._range(node, ref, node.a, node.include, None, False)
        if isinstance(node, t.To):
            return self._range(node, ref, None, False, node.a, node.include)
        if isinstance(node, t.Regex):
            pattern = self.bind(node.value[1:-1])
            return self._either([f"match({expr}, {pattern})" for expr in self._string_exprs(node, ref)])
        value = _phrase_value(node.value) if isinstance(node, t.Phrase) else _word_value(node.value)
        if value.match_all:
            return self._exists_sql(ref)
        return self._equals(node, ref, value)

    def _string_exprs(self, node: t.Item, ref: Any, key: str | None = None) -> list[str]:
        """The string expressions a text comparison on `ref` reads."""
        if ref.kind is Kind.ATTRIBUTE:
            bound = self.bind(ref.key)
            return [f"{m}[{bound}]" for m in ref.maps]
        if ref.kind in (Kind.NUMBER, Kind.DURATION_MS):
            raise self._fail(node, f"field {ref.name!r} is numeric: compare it with a number, e.g. {ref.name}:>10")
        return [ref.expr]

    def _equals(self, node: t.Item, ref: Any, value: _Value) -> str:
        kind = ref.kind
        if kind is Kind.STATUS:
            if value.number() is not None and not value.has_wildcard:
                bound = self.bind(value.text)
                return self._either([f"{m}[{self.bind(k)}] = {bound}" for m in ref.maps for k in ref.http_keys])
            kind = Kind.TEXT_CI
        if kind in (Kind.NUMBER, Kind.DURATION_MS):
            number = value.number()
            if number is None or value.has_wildcard:
                raise self._fail(node, f"field {ref.name!r} is numeric; {value.text!r} is not a number")
            if kind is Kind.DURATION_MS:
                number *= 1e6
            return f"{ref.expr} = {self.bind(number, 'Float64')}"
        if kind is Kind.TEXT_CI:
            if value.has_wildcard:
                return f"{ref.expr} ILIKE {self.bind(value.like())}"
            return f"lower({ref.expr}) = {self.bind(_ascii_lower(value.text))}"
        exprs = self._string_exprs(node, ref)
        if value.has_wildcard:
            pattern = self.bind(value.like())
            return self._either([f"{e} LIKE {pattern}" for e in exprs])
        bound = self.bind(value.text)
        return self._either([f"{e} = {bound}" for e in exprs])

    def _bound(self, node: t.Item, item: t.Item | None) -> _Value | None:
        if item is None:
            return None
        if isinstance(item, t.Phrase):
            return _phrase_value(item.value)
        if isinstance(item, t.Word):
            value = _word_value(item.value)
            return None if value.match_all else value
        raise self._fail(node, "a range bound must be a value")

    def _range(self, node: t.Item, ref: Any, low_item: t.Item | None, low_inclusive: bool,
               high_item: t.Item | None, high_inclusive: bool) -> str:
        low, high = self._bound(node, low_item), self._bound(node, high_item)
        if low is None and high is None:
            return self._exists_sql(ref)
        numeric = all(v is None or v.number() is not None for v in (low, high))
        kind = ref.kind
        if kind is Kind.STATUS:
            kind = Kind.ATTRIBUTE if numeric else Kind.TEXT_CI
        if kind in (Kind.NUMBER, Kind.DURATION_MS) and not numeric:
            raise self._fail(node, f"field {ref.name!r} is numeric; range bounds must be numbers")
        if kind in (Kind.NUMBER, Kind.DURATION_MS):
            exprs = [ref.expr]
        elif kind is Kind.ATTRIBUTE and ref.kind is Kind.STATUS:
            exprs = [f"{m}[{self.bind(k)}]" for m in ref.maps for k in ref.http_keys]
        else:
            exprs = self._string_exprs(node, ref)
        scale = 1e6 if kind is Kind.DURATION_MS else 1.0
        comparisons: list[tuple[str, str]] = []
        for value, inclusive, op in ((low, low_inclusive, ">"), (high, high_inclusive, "<")):
            if value is None:
                continue
            if numeric:
                number = value.number()
                assert number is not None
                bound = self.bind(number * scale, "Float64")
            else:
                bound = self.bind(value.text)
            comparisons.append((op + ("=" if inclusive else ""), bound))
        per_expr = []
        for expr in exprs:
            target = expr if (kind in (Kind.NUMBER, Kind.DURATION_MS) or not numeric) else f"toFloat64OrNull({expr})"
            per_expr.append(" AND ".join(f"{target} {op} {bound}" for op, bound in comparisons))
        if len(per_expr) == 1:
            return per_expr[0] if len(comparisons) == 1 else f"({per_expr[0]})"
        return "(" + " OR ".join(f"({p})" for p in per_expr) + ")"


def compile_query(text: str, resolver: Resolver, prefix: str = "q") -> Compiled:
    """`text` as a ClickHouse boolean expression over the source, with its parameters; "1" when empty."""
    try:
        tree = parse(text)
    except SearchSyntaxError as exc:
        raise ApiError(400, "syntax_error", f"q: {exc.message}", field="q", position=exc.position,
                       expected=exc.expected) from None
    if tree is None:
        return Compiled("1")
    compiler = Compiler(resolver, prefix)
    return Compiled(compiler.compile(tree), compiler.params)
