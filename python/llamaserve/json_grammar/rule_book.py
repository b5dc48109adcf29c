"""The rules of one grammar being written: named after what they match, each body held once,
the shared JSON primitives added with what they need, and many literals as one prefix tree."""
from __future__ import annotations

import re
from typing import Any

from llamaserve.gbnf import PRIMITIVE_DEPS, PRIMITIVES, literal
from llamaserve.json_grammar.limits import MAX_RULES, SchemaError


class RuleBook:
    def __init__(self) -> None:
        self.rules: dict[str, str] = {}
        self.named: dict[str, str] = {}  # body -> the rule that has it
        self.suffix: dict[str, int] = {}  # base name -> the last number given to it

    def use(self, name: str) -> str:
        """Reference a shared primitive rule (adding it and what it needs)."""
        if name not in self.rules:
            self.rules[name] = PRIMITIVES[name]
            for dep in PRIMITIVE_DEPS.get(name, ()):
                self.use(dep)
        return name

    def rule(self, hint: str, body: str) -> str:
        """Add a rule named after `hint` (made unique) and return its name; an identical
        rule already present is reused."""
        if body in self.named:
            return self.named[body]
        base = re.sub(r"[^a-zA-Z0-9-]+", "-", hint).strip("-").lower()[:64] or "r"
        if base in PRIMITIVES or base == "root":
            base += "-"
        name = base
        while name in self.rules:  # numbered on from the last number this base got
            self.suffix[base] = self.suffix.get(base, 1) + 1
            name = f"{base}{self.suffix[base]}"
        if len(self.rules) >= MAX_RULES:
            raise SchemaError("schema too large: the grammar would need too many rules")
        self.rules[name] = body
        self.named[body] = name
        return name

    def choice(self, texts: list[str], hint: str) -> str:
        """An expression matching exactly one of `texts` (distinct), as a prefix tree: texts that
        share a prefix share its match, so each character weighs the few that can follow it,
        not every text. Built without recursion (a text may be long)."""
        end = ""  # a key no character takes: a text ends here
        root: dict[str, Any] = {}
        for text in texts:
            node = root
            for ch in text:
                node = node.setdefault(ch, {})
            node[end] = {}
        expressions: dict[int, str] = {}
        stack: list[tuple[dict[str, Any], bool]] = [(root, False)]
        while stack:
            node, ready = stack.pop()
            if not ready:
                stack.append((node, True))
                stack.extend((child, False) for ch, child in node.items() if ch != end)
                continue
            options = []
            for ch, child in node.items():
                if ch == end:
                    options.append("")
                    continue
                label = ch
                while len(child) == 1 and end not in child:  # a chain without branches: one literal
                    (ch2, child), = child.items()
                    label += ch2
                options.append(f"{literal(label)} {expressions[id(child)]}".strip())
            if len(options) == 1:
                expressions[id(node)] = options[0]
            else:
                expressions[id(node)] = self.rule(f"{hint}-choice", " | ".join(o or '""' for o in options))
        return expressions[id(root)] or '""'
