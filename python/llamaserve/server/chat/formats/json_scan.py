"""An incremental JSON syntax checker: fed a reply's text piece by piece, it says where one
JSON value ends, or that the text cannot be JSON, as soon as the character that decides it
arrives. Tool-call arguments are streamed while they are generated, so they must be checked
the same way; nesting is bounded so that no reply can make a later json.loads recurse deeply.
"""
from __future__ import annotations

import re

MAX_DEPTH = 64  # tool arguments nest a few levels; a model emitting "[[[[..." is not writing a call

_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?\Z")
_NUMBER_CHARS = frozenset("0123456789+-.eE")
_HEX = frozenset("0123456789abcdefABCDEF")
_ESCAPES = frozenset('"\\/bfnrtu')
_SPACE = frozenset(" \t\r\n")
_STRING_STOP = re.compile(r'["\\\x00-\x1f]')

# modes
_VALUE, _VALUE_OR_END, _KEY, _KEY_OR_END, _COLON, _AFTER, _STRING, _ESCAPE, _UNICODE, _NUMBER_MODE, _LITERAL = range(11)


class JsonSyntaxError(ValueError):
    pass


class JsonScanner:
    """Checks one JSON value. scan(text, i) reads from i and returns the index just after
    the value once it is complete, or -1 when all of `text` was read and more is needed."""

    __slots__ = ("stack", "mode", "is_key", "pending", "number")

    def __init__(self) -> None:
        self.stack: list[str] = []
        self.mode = _VALUE
        self.is_key = False
        self.pending = 0  # hex digits of \\u, or the index into a literal
        self.number: list[str] = []

    @property
    def done(self) -> bool:
        return self.mode == _AFTER and not self.stack

    def scan(self, text: str, i: int) -> int:
        n = len(text)
        while i < n:
            mode = self.mode
            c = text[i]
            if mode == _STRING:
                match = _STRING_STOP.search(text, i)
                if match is None:
                    return -1
                i = match.start()
                c = text[i]
                if c == '"':
                    self.mode = _COLON if self.is_key else _AFTER
                    i += 1
                    if self.mode == _AFTER and not self.stack:
                        return i
                    continue
                if c == "\\":
                    self.mode = _ESCAPE
                    i += 1
                    continue
                raise JsonSyntaxError("a control character inside a string")
            if mode == _ESCAPE:
                if c not in _ESCAPES:
                    raise JsonSyntaxError("a bad escape in a string")
                self.mode, self.pending = (_UNICODE, 4) if c == "u" else (_STRING, 0)
                i += 1
                continue
            if mode == _UNICODE:
                if c not in _HEX:
                    raise JsonSyntaxError("a bad \\u escape in a string")
                self.pending -= 1
                if self.pending == 0:
                    self.mode = _STRING
                i += 1
                continue
            if mode == _NUMBER_MODE:
                if c in _NUMBER_CHARS:
                    self.number.append(c)
                    i += 1
                    continue
                self._end_number()
                if not self.stack:
                    return i
                continue
            if mode == _LITERAL:
                word, at = self.number[0], self.pending
                if c != word[at]:
                    raise JsonSyntaxError("not a JSON literal")
                self.pending += 1
                i += 1
                if self.pending == len(word):
                    self.mode = _AFTER
                    if not self.stack:
                        return i
                continue
            if c in _SPACE:
                i += 1
                continue
            if mode == _VALUE or mode == _VALUE_OR_END:
                if mode == _VALUE_OR_END and c == "]":
                    self._close("[")
                    i += 1
                    if not self.stack:
                        return i
                    continue
                self._value(c)
            elif mode == _KEY or mode == _KEY_OR_END:
                if c == '"':
                    self.mode, self.is_key = _STRING, True
                elif c == "}" and mode == _KEY_OR_END:
                    self._close("{")
                    i += 1
                    if not self.stack:
                        return i
                    continue
                else:
                    raise JsonSyntaxError("expected a key")
            elif mode == _COLON:
                if c != ":":
                    raise JsonSyntaxError("expected ':'")
                self.mode = _VALUE
            else:  # _AFTER, inside a container
                top = self.stack[-1] if self.stack else None
                if c == "," and top is not None:
                    self.mode = _KEY if top == "{" else _VALUE
                elif c in "}]" and top == ("{" if c == "}" else "["):
                    self._close(top)
                    i += 1
                    if not self.stack:
                        return i
                    continue
                else:
                    raise JsonSyntaxError("expected ',' or the end of a container")
            i += 1
        return -1

    def finish(self) -> bool:
        """At the end of the text: whether a complete value was read (a top-level number ends here)."""
        if self.mode == _NUMBER_MODE and not self.stack:
            self._end_number()
        return self.done

    def _value(self, c: str) -> None:
        if c == "{" or c == "[":
            if len(self.stack) >= MAX_DEPTH:
                raise JsonSyntaxError(f"nested deeper than {MAX_DEPTH} levels")
            self.stack.append(c)
            self.mode = _KEY_OR_END if c == "{" else _VALUE_OR_END
        elif c == '"':
            self.mode, self.is_key = _STRING, False
        elif c == "-" or c.isdigit():
            self.mode, self.number = _NUMBER_MODE, [c]
        elif c in "tfn":
            self.mode, self.pending = _LITERAL, 1
            self.number = [{"t": "true", "f": "false", "n": "null"}[c]]
        else:
            raise JsonSyntaxError("expected a JSON value")

    def _close(self, opener: str) -> None:
        self.stack.pop()
        self.mode = _AFTER

    def _end_number(self) -> None:
        if not _NUMBER.match("".join(self.number)):
            raise JsonSyntaxError("a malformed number")
        self.mode = _AFTER
