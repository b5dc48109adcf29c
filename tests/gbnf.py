"""A small GBNF recognizer for tests: does a grammar (the subset llama.cpp reads: literals,
character classes, groups, alternatives, rule references, * + ? {m} {m,} {m,n}) accept a
whole string? Each piece maps a start position to the set of its end positions; grammars
must not be left-recursive."""
from __future__ import annotations

import re
from collections.abc import Callable

Ends = frozenset[int]

_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"', "[": "[", "]": "]", "-": "-", "/": "/", "^": "^"}


class Grammar:
    def __init__(self, text: str) -> None:
        self.rules: dict[str, Callable[[str, int], Ends]] = {}
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, _, body = line.partition("::=")
            self.src, self.i = body, 0
            self.rules[name.strip()] = self._alternatives()
            self._space()
            assert self.i == len(self.src), f"trailing text in rule {name}: {self.src[self.i:]!r}"

    # -- parsing ------------------------------------------------------------------------
    def _space(self) -> None:
        while self.i < len(self.src) and self.src[self.i] in " \t":
            self.i += 1

    def _peek(self) -> str:
        self._space()
        return self.src[self.i] if self.i < len(self.src) else ""

    def _alternatives(self) -> Callable[[str, int], Ends]:
        options = [self._sequence()]
        while self._peek() == "|":
            self.i += 1
            options.append(self._sequence())

        def match(s: str, pos: int) -> Ends:
            out: set[int] = set()
            for option in options:
                out |= option(s, pos)
            return frozenset(out)
        return match

    def _sequence(self) -> Callable[[str, int], Ends]:
        items = []
        while self._peek() not in ("", "|", ")"):
            items.append(self._postfix(self._atom()))

        def match(s: str, pos: int) -> Ends:
            current = frozenset([pos])
            for item in items:
                nxt: set[int] = set()
                for p in current:
                    nxt |= item(s, p)
                current = frozenset(nxt)
                if not current:
                    break
            return current
        return match

    def _escape(self) -> str:
        c = self.src[self.i]
        self.i += 1
        if c == "x":
            value = chr(int(self.src[self.i:self.i + 2], 16))
            self.i += 2
            return value
        if c == "u":
            value = chr(int(self.src[self.i:self.i + 4], 16))
            self.i += 4
            return value
        return _ESCAPES[c]

    def _atom(self) -> Callable[[str, int], Ends]:
        c = self._peek()
        if c == '"':
            self.i += 1
            chars = []
            while self.src[self.i] != '"':
                if self.src[self.i] == "\\":
                    self.i += 1
                    chars.append(self._escape())
                else:
                    chars.append(self.src[self.i])
                    self.i += 1
            self.i += 1
            lit = "".join(chars)
            return lambda s, pos: frozenset([pos + len(lit)]) if s.startswith(lit, pos) else frozenset()
        if c == "[":
            self.i += 1
            negate = self.src[self.i] == "^"
            if negate:
                self.i += 1
            ranges = []
            while self.src[self.i] != "]":
                lo = self._class_char()
                hi = lo
                if self.src[self.i] == "-" and self.src[self.i + 1] != "]":
                    self.i += 1
                    hi = self._class_char()
                ranges.append((lo, hi))
            self.i += 1

            def match_class(s: str, pos: int) -> Ends:
                if pos >= len(s):
                    return frozenset()
                inside = any(lo <= s[pos] <= hi for lo, hi in ranges)
                return frozenset([pos + 1]) if inside != negate else frozenset()
            return match_class
        if c == "(":
            self.i += 1
            inner = self._alternatives()
            assert self._peek() == ")"
            self.i += 1
            return inner
        m = re.compile(r"[a-zA-Z0-9-]+").match(self.src, self.i)
        assert m, f"unexpected {self.src[self.i:self.i + 20]!r}"
        self.i = m.end()
        name = m.group(0)
        return lambda s, pos: self.rules[name](s, pos)

    def _class_char(self) -> str:
        c = self.src[self.i]
        self.i += 1
        return self._escape() if c == "\\" else c

    def _postfix(self, atom: Callable[[str, int], Ends]) -> Callable[[str, int], Ends]:
        if self.i >= len(self.src):
            return atom
        c = self.src[self.i]
        if c in "*+?":
            self.i += 1
            low, high = {"*": (0, None), "+": (1, None), "?": (0, 1)}[c]
        elif c == "{":
            m = re.compile(r"\{(\d+)(,(\d*))?\}").match(self.src, self.i)
            assert m
            self.i = m.end()
            low = int(m.group(1))
            high = low if m.group(2) is None else (int(m.group(3)) if m.group(3) else None)
        else:
            return atom

        def match(s: str, pos: int) -> Ends:
            result: set[int] = {pos} if low == 0 else set()
            frontier = frozenset([pos])
            count = 0
            seen: set[int] = set()
            while frontier and (high is None or count < high):
                nxt: set[int] = set()
                for p in frontier:
                    nxt |= atom(s, p)
                count += 1
                frontier = frozenset(nxt - seen) if high is None else frozenset(nxt)
                seen |= nxt
                if count >= low:
                    result |= nxt
            return frozenset(result)
        return match

    def accepts(self, text: str) -> bool:
        return len(text) in self.rules["root"](text, 0)
