"""How a search field name becomes a ClickHouse expression, for one source.

Order: the source kind's aliases (``level``, ``service``, ``duration``...), then a column of the table by
its exact name (``SeverityNumber``; ``LogAttributes.key`` for one key of a map column), then the aliases
again case-insensitively, then the explicit map prefixes (``attributes.key``, ``resource.key``), then an
attribute key with a materialized column, then any attribute key that the source's data has (record or
resource attributes). A name that is none of these is an unknown field.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

from query.reader import quote_identifier


class Kind(enum.Enum):
    TEXT = "text"            # a string: equality, wildcards, regex; ranges compare numbers when given numbers
    TEXT_CI = "text_ci"      # a string compared case-insensitively (severity, span kind, status)
    NUMBER = "number"        # a numeric expression
    DURATION_MS = "duration"  # an expression in nanoseconds, searched in milliseconds
    ATTRIBUTE = "attribute"  # a key of one or more Map(String, String) expressions
    STATUS = "status"        # span status (text), or the HTTP status attribute when given a number


class UnknownField(LookupError):
    def __init__(self, name: str, reason: str) -> None:
        super().__init__(reason)
        self.name, self.reason = name, reason


@dataclass(frozen=True)
class FieldRef:
    name: str
    kind: Kind
    expr: str = ""                      # TEXT/NUMBER/...: the expression
    maps: tuple[str, ...] = ()          # ATTRIBUTE: the map expressions that may hold `key`
    key: str = ""                       # ATTRIBUTE: the key (bound as a parameter, never spliced)
    http_keys: tuple[str, ...] = ()     # STATUS: attribute keys that hold an HTTP status code


NUMERIC_PREFIXES = ("UInt", "Int", "Float", "Decimal", "Bool")


def _base_type(type_name: str) -> str:
    for wrapper in ("LowCardinality(", "Nullable("):
        while type_name.startswith(wrapper):
            type_name = type_name[len(wrapper):-1]
    return type_name


@dataclass
class Resolver:
    """Field names -> FieldRefs for one source (pure: the caller supplies the schema and the known keys)."""

    aliases: Mapping[str, FieldRef]
    columns: Mapping[str, str]                      # column -> type
    attributes: str                                  # record/span attributes map expression
    resource_attributes: str                         # resource attributes map expression
    materialized: Mapping[str, str] = field(default_factory=dict)   # attribute key -> column
    # None: any key is accepted; a callable is asked only when a name gets that far (it may query ClickHouse)
    known_keys: Collection[str] | Callable[[], Collection[str]] | None = None
    body: str = ""                                   # free text searches this ('' : no free text)

    def resolve(self, name: str) -> FieldRef:
        alias = self.aliases.get(name)
        if alias is not None:
            return alias
        if name in self.columns:  # a column by its exact name wins over an alias spelt the same in another case
            return self._column(name)
        alias = self.aliases.get(name.lower())
        if alias is not None:
            return alias
        head, dot, key = name.partition(".")
        if dot and key and head in self.columns and _base_type(self.columns[head]).startswith("Map("):
            return FieldRef(name, Kind.ATTRIBUTE, maps=(quote_identifier(head),), key=key)
        for prefix, maps in (("attributes.", (self.attributes,)), ("attr.", (self.attributes,)),
                             ("resource.", (self.resource_attributes,))):
            if name.startswith(prefix) and len(name) > len(prefix):
                return FieldRef(name, Kind.ATTRIBUTE, maps=maps, key=name[len(prefix):])
        if name in self.materialized:
            return FieldRef(name, Kind.TEXT, expr=quote_identifier(self.materialized[name]))
        known = self.known_keys() if callable(self.known_keys) else self.known_keys
        if known is not None and name not in known:
            raise UnknownField(name, f"unknown field {name!r}: not a field of this source, a column of its table, "
                                     "or an attribute key found in its recent data (prefix it with attributes. or "
                                     "resource. to search a key anyway)")
        return FieldRef(name, Kind.ATTRIBUTE, maps=(self.attributes, self.resource_attributes), key=name)

    def _column(self, name: str) -> FieldRef:
        base = _base_type(self.columns[name])
        if base.startswith(NUMERIC_PREFIXES):
            return FieldRef(name, Kind.NUMBER, expr=quote_identifier(name))
        if base in ("String", "FixedString") or base.startswith(("FixedString(", "Enum")):
            return FieldRef(name, Kind.TEXT, expr=quote_identifier(name))
        raise UnknownField(name, f"column {name!r} has type {self.columns[name]}, which search does not compare; "
                                 "search a key of a map column as Column.key")


def log_aliases(service: str, severity_text: str, severity_number: str, body: str, trace_id: str,
                span_id: str) -> dict[str, FieldRef]:
    refs = {
        "service": FieldRef("service", Kind.TEXT, expr=service),
        "level": FieldRef("level", Kind.TEXT_CI, expr=severity_text),
        "severity_number": FieldRef("severity_number", Kind.NUMBER, expr=severity_number),
        "body": FieldRef("body", Kind.TEXT, expr=body),
        "trace_id": FieldRef("trace_id", Kind.TEXT_CI, expr=trace_id),
        "span_id": FieldRef("span_id", Kind.TEXT_CI, expr=span_id),
    }
    for alias, target in (("service.name", "service"), ("severity", "level"), ("severity_text", "level"),
                          ("message", "body"), ("traceid", "trace_id"), ("spanid", "span_id")):
        refs[alias] = refs[target]
    return refs


HTTP_STATUS_KEYS = ("http.response.status_code", "http.status_code")


def trace_aliases(service: str, span_name: str, span_kind: str, duration_ns: str, status_code: str,
                  status_message: str, trace_id: str, span_id: str, parent_span_id: str,
                  attributes: str) -> dict[str, FieldRef]:
    refs = {
        "service": FieldRef("service", Kind.TEXT, expr=service),
        "name": FieldRef("name", Kind.TEXT, expr=span_name),
        "kind": FieldRef("kind", Kind.TEXT_CI, expr=span_kind),
        "duration": FieldRef("duration", Kind.DURATION_MS, expr=duration_ns),
        "status": FieldRef("status", Kind.STATUS, expr=status_code, maps=(attributes,), http_keys=HTTP_STATUS_KEYS),
        "status_message": FieldRef("status_message", Kind.TEXT, expr=status_message),
        "trace_id": FieldRef("trace_id", Kind.TEXT_CI, expr=trace_id),
        "span_id": FieldRef("span_id", Kind.TEXT_CI, expr=span_id),
        "parent_span_id": FieldRef("parent_span_id", Kind.TEXT_CI, expr=parent_span_id),
    }
    for alias, target in (("service.name", "service"), ("span_name", "name"), ("span", "name"),
                          ("span_kind", "kind"), ("status_code", "status"), ("traceid", "trace_id"),
                          ("spanid", "span_id")):
        refs[alias] = refs[target]
    return refs
