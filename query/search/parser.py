"""Parse a Lucene-style query string with luqum; syntax errors carry the position and what was expected.

luqum's parser (PLY) is not thread-safe, and its error only has a message: so parsing runs under a lock
with a fresh lexer clone, and on an error the parser's own LR table says which tokens it would have
accepted in the state it stopped in.
"""

from __future__ import annotations

import threading
from typing import Any

from luqum import parser as luqum_parser
from luqum.exceptions import IllegalCharacterError, ParseError
from luqum.tree import Item

MAX_QUERY_LENGTH = 4000

_LOCK = threading.Lock()

# luqum's token names, as a user would recognise them
TOKEN_NAMES = {
    "TERM": "a term", "PHRASE": "a quoted phrase", "REGEX": "a /regex/", "LPAREN": "'('", "RPAREN": "')'",
    "LBRACKET": "'[' or '{'", "RBRACKET": "']' or '}'", "AND_OP": "AND", "OR_OP": "OR", "NOT": "NOT",
    "TO": "TO", "MINUS": "'-'", "PLUS": "'+'", "COLUMN": "':'", "GREATERTHAN": "'>'", "LESSTHAN": "'<'",
    "APPROX": "'~'", "BOOST": "'^'", "$end": "the end of the query",
}


class SearchSyntaxError(ValueError):
    """A query string luqum cannot parse: where, and what would have been accepted there."""

    def __init__(self, message: str, position: int, expected: list[str]) -> None:
        super().__init__(message)
        self.message, self.position, self.expected = message, position, expected


def parse(text: str) -> Item | None:
    """The luqum tree of `text`, or None for an empty query (match everything)."""
    if len(text) > MAX_QUERY_LENGTH:
        raise SearchSyntaxError(f"the query is {len(text)} characters long; at most {MAX_QUERY_LENGTH} are accepted",
                                MAX_QUERY_LENGTH, [])
    if not text.strip():
        return None
    last: dict[str, Any] = {}
    with _LOCK:
        lexer = luqum_parser.lexer.clone()
        lexer.input(text)

        def next_token() -> Any:
            token = lexer.token()
            last["token"] = token
            return token

        try:
            return luqum_parser.parser.parse(text, lexer=lexer, tokenfunc=next_token)
        except IllegalCharacterError:
            position = int(getattr(lexer, "lexpos", 0))
            char = text[position] if position < len(text) else ""
            hint = "expected a closing '\"'" if char == '"' else "quote or escape it with \\"
            raise SearchSyntaxError(f"unexpected character {char!r} at position {position}: {hint}", position,
                                    ['a closing \'"\''] if char == '"' else []) from None
        except ParseError:
            state = luqum_parser.parser.statestack[-1] if luqum_parser.parser.statestack else 0
            wanted = sorted(luqum_parser.parser.action.get(state, {}).keys())
            expected = sorted({TOKEN_NAMES.get(name, name) for name in wanted})
            token = last.get("token")
            if token is None:
                position = len(text)
                what = "unexpected end of the query"
            else:
                position = int(token.lexpos)
                what = f"unexpected {str(token.value).strip() or token.type!s} at position {position}"
            message = f"{what}; expected {', '.join(expected) if expected else 'something else'}"
            raise SearchSyntaxError(message, position, expected) from None
