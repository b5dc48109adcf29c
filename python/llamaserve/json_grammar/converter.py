"""A JSON Schema's keywords, each turned into the grammar rules that match what it allows."""
from __future__ import annotations

import json
import math
from typing import Any

from llamaserve.gbnf import FORMATS, json_literal, json_text, literal, repeat
from llamaserve.json_grammar.limits import (
    MAX_ALTERNATIVES, MAX_DEPTH, MAX_ENUM, MAX_ENUM_RANGE, MAX_REPEAT, SchemaError,
)
from llamaserve.json_grammar.rule_book import RuleBook

ANNOTATIONS = frozenset({
    "title", "description", "default", "examples", "$schema", "$id", "$comment", "$anchor",
    "deprecated", "readOnly", "writeOnly", "$defs", "definitions", "format", "discriminator",
    "contentEncoding", "contentMediaType", "strict",
})
SUPPORTED = frozenset({
    "type", "properties", "required", "additionalProperties", "items", "prefixItems",
    "minItems", "maxItems", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "minLength",
    "maxLength", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "nullable",
})
TYPES = ("object", "array", "string", "number", "integer", "boolean", "null")


class SchemaConverter(RuleBook):
    def __init__(self, root: Any) -> None:
        super().__init__()
        self.root = root
        self.refs: dict[str, str] = {}

    def visit(self, schema: Any, hint: str, path: str, depth: int = 0) -> str:
        """A GBNF expression matching JSON valid against `schema`."""
        if depth > MAX_DEPTH:
            raise SchemaError(f"schema nested too deeply at {path or '/'}")
        if schema is True or schema == {}:
            return self.use("value")
        if schema is False:
            raise SchemaError(f"schema at {path or '/'} is false: nothing can match it")
        if not isinstance(schema, dict):
            raise SchemaError(f"schema at {path or '/'} must be an object or a boolean")
        for key in schema:
            if key not in SUPPORTED and key not in ANNOTATIONS and not str(key).startswith("x-"):
                raise SchemaError(f"unsupported keyword {str(key)[:64]!r} at {path or '/'}")

        if "$ref" in schema:
            return self.ref(schema["$ref"], path, depth)
        if "const" in schema:
            return json_literal(self.constant(schema["const"], path + "/const"))
        if "enum" in schema:
            values = schema["enum"]
            if not isinstance(values, list) or not values:
                raise SchemaError(f"enum at {path or '/'} must be a non-empty list")
            if len(values) > MAX_ENUM:
                raise SchemaError(f"enum at {path or '/'}: {len(values)} values; at most {MAX_ENUM}")
            texts = dict.fromkeys(json_text(self.constant(v, path + "/enum")) for v in values)
            return self.choice(list(texts), f"{hint}-enum")
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return self.alternatives(schema, key, hint, path, depth)
        if "allOf" in schema:
            return self.visit(self.merge_all_of(schema, path), hint, path, depth + 1)

        kinds = schema.get("type")
        if kinds is None:
            kinds = self.implied_type(schema)
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not isinstance(kinds, list) or not kinds or any(k not in TYPES for k in kinds):
            raise SchemaError(f"type at {path or '/'} must be one of {', '.join(TYPES)} (or a list of them)")
        if schema.get("nullable") is True and "null" not in kinds:
            kinds = [*kinds, "null"]
        alternatives = [self.typed(kind, schema, hint, path, depth) for kind in dict.fromkeys(kinds)]
        return alternatives[0] if len(alternatives) == 1 else "(" + " | ".join(alternatives) + ")"

    @staticmethod
    def implied_type(schema: dict[str, Any]) -> str | list[str]:
        if any(k in schema for k in ("properties", "additionalProperties", "required")):
            return "object"
        if any(k in schema for k in ("items", "prefixItems", "minItems", "maxItems")):
            return "array"
        if any(k in schema for k in ("minLength", "maxLength")):
            return "string"
        if any(k in schema for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")):
            return "number"
        return list(TYPES)

    @staticmethod
    def constant(value: Any, path: str) -> Any:
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            raise SchemaError(f"{path}: not a JSON value") from None
        return value

    def alternatives(self, schema: dict[str, Any], key: str, hint: str, path: str, depth: int) -> str:
        options = schema[key]
        if not isinstance(options, list) or not options:
            raise SchemaError(f"{key} at {path or '/'} must be a non-empty list of schemas")
        if len(options) > MAX_ALTERNATIVES:
            raise SchemaError(f"{key} at {path or '/'}: {len(options)} options; at most {MAX_ALTERNATIVES} "
                              "(each one is weighed at every character)")
        # Sibling keywords (like a shared "type") apply to every alternative.
        shared = {k: v for k, v in schema.items() if k != key and k not in ANNOTATIONS}
        exprs = []
        for i, option in enumerate(options):
            merged = {**shared, **option} if shared and isinstance(option, dict) else option
            exprs.append(self.visit(merged, f"{hint}-{i}", f"{path}/{key}/{i}", depth + 1))
        return "(" + " | ".join(exprs) + ")"

    def resolve(self, ref: Any, path: str) -> tuple[str, Any]:
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise SchemaError(f"$ref at {path or '/'}: only local references (#/...) are supported")
        target = self.root
        pointer = ref[1:]
        if pointer:
            if not pointer.startswith("/"):
                raise SchemaError(f"$ref {ref[:100]!r}: not a JSON pointer")
            for part in pointer[1:].split("/"):
                part = part.replace("~1", "/").replace("~0", "~")
                if isinstance(target, dict) and part in target:
                    target = target[part]
                elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
                    target = target[int(part)]
                else:
                    raise SchemaError(f"$ref {ref[:100]!r} at {path or '/'}: no such definition")
        return ref, target

    def ref(self, ref: Any, path: str, depth: int) -> str:
        key, target = self.resolve(ref, path)
        if key in self.refs:
            return self.refs[key]
        name = self.rule("ref-" + (key.rsplit("/", 1)[-1] or "root"), f"# placeholder {len(self.rules)}")
        self.refs[key] = name  # before visiting, so recursive schemas end here
        self.rules[name] = self.visit(target, name, key[1:], depth + 1)
        return name

    def merge_all_of(self, schema: dict[str, Any], path: str) -> dict[str, Any]:
        parts = schema["allOf"]
        if not isinstance(parts, list) or not parts:
            raise SchemaError(f"allOf at {path or '/'} must be a non-empty list of schemas")
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for i, part in enumerate(parts):
            followed: set[str] = set()
            while isinstance(part, dict) and "$ref" in part:
                ref = part["$ref"]
                if not isinstance(ref, str) or ref in followed:
                    raise SchemaError(f"allOf at {path}/allOf/{i}: circular $ref {str(ref)[:100]!r}")
                followed.add(ref)
                part = {**self.resolve(ref, f"{path}/allOf/{i}")[1], **{k: v for k, v in part.items() if k != "$ref"}}
            if not isinstance(part, dict):
                raise SchemaError(f"allOf at {path or '/'}: each part must be a schema object")
            for key, value in part.items():
                if key == "properties":
                    merged["properties"] = {**merged.get("properties", {}), **value}
                elif key == "required":
                    merged["required"] = list(dict.fromkeys([*merged.get("required", []), *value]))
                elif key in ANNOTATIONS:
                    continue
                elif key in merged and merged[key] != value:
                    raise SchemaError(f"allOf at {path or '/'}: cannot combine differing {key!r}")
                else:
                    merged[key] = value
        if "type" in merged and merged["type"] != "object" and len(parts) > 1:
            raise SchemaError(f"allOf at {path or '/'}: only objects can be combined")
        return merged

    # -- types ----------------------------------------------------------------------------

    def typed(self, kind: str, schema: dict[str, Any], hint: str, path: str, depth: int) -> str:
        if kind == "object":
            return self.object(schema, hint, path, depth)
        if kind == "array":
            return self.array(schema, hint, path, depth)
        if kind == "string":
            return self.string(schema, hint, path)
        if kind == "integer":
            return self.integer(schema, hint, path)
        if kind == "number":
            return self.number(schema, hint, path)
        return self.use(kind)

    def object(self, schema: dict[str, Any], hint: str, path: str, depth: int) -> str:
        properties = schema.get("properties", {})
        required = schema.get("required", [])
        # Listed properties (even none) and no word on others: only those (stricter, still valid).
        extra = schema.get("additionalProperties", None if "properties" in schema else True)
        if not isinstance(properties, dict):
            raise SchemaError(f"properties at {path or '/'} must be an object")
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            raise SchemaError(f"required at {path or '/'} must be a list of names")
        missing = [r for r in required if r not in properties]
        if missing and extra in (None, False):
            raise SchemaError(f"required at {path or '/'}: {missing[0][:64]!r} is not among the properties")
        if missing:
            # A required property only described by additionalProperties: list it explicitly.
            properties = {**properties, **{r: extra if isinstance(extra, dict) else {} for r in missing}}
        ws = self.use("ws")
        members = []  # (expression of `"key" ws ":" ws value ws`, required?)
        for key, sub in properties.items():
            value = self.visit(sub, f"{hint}-{key}", f"{path}/properties/{key}", depth + 1)
            members.append((f'{literal(json.dumps(key, ensure_ascii=False))} {ws} ":" {ws} {value} {ws}',
                            key in required))
        extra_member = None
        if extra not in (None, False):
            value = self.use("value") if extra is True else self.visit(
                extra, f"{hint}-additional", f"{path}/additionalProperties", depth + 1)
            extra_member = f'{self.use("string")} {ws} ":" {ws} {value} {ws}'
        if not members and extra_member is None:
            return self.rule(hint or "object", f'"{{" {ws} "}}"')
        optional = sum(1 for _, req in members if not req)
        if optional > MAX_ALTERNATIVES:
            raise SchemaError(f"properties at {path or '/'}: {optional} optional properties; at most "
                              f"{MAX_ALTERNATIVES} (any of them may come next); list more of them in required")
        return self.rule(hint or "object", f'"{{" {ws} {self.members(members, extra_member, hint)} "}}"')

    def members(self, members: list[tuple[str, bool]], extra: str | None, hint: str) -> str:
        """The members in schema order, optional ones skippable, extra members after them, commas
        between. pick(i): a member from i on (optional ones before it skipped) and what may follow
        it. Built from the last member back, so the grammar grows linearly and a comma is matched
        once whichever member follows it; a pick is a rule where it has alternatives or is used
        twice (by an optional member before it), else it stays inline."""
        ws = self.use("ws")
        after = f'("," {ws} {extra})*' if extra is not None else ""  # what may follow the last member
        pick = f"{extra} {after}" if extra is not None else None
        required_after = False  # a required member is still to come: a comma must follow
        for i in reversed(range(len(members))):
            member, req = members[i]
            chosen = f"{member} {after}".strip()
            named = not req and pick is not None
            pick = self.rule(f"{hint}-pick-{i}", f"{chosen} | {pick}") if named else chosen
            if not named and i > 0 and not members[i - 1][1]:
                pick = self.rule(f"{hint}-pick-{i}", pick)
            required_after = required_after or req
            after = f'"," {ws} {pick}' if required_after else f'("," {ws} {pick})?'
        assert pick is not None
        return pick if required_after else f"({pick})?"

    def array(self, schema: dict[str, Any], hint: str, path: str, depth: int) -> str:
        low = self.count(schema, "minItems", path, 0)
        high = self.count(schema, "maxItems", path, None)
        if high is not None and high < low:
            raise SchemaError(f"maxItems at {path or '/'} is below minItems")
        ws = self.use("ws")
        prefix = schema.get("prefixItems") or []
        if not isinstance(prefix, list):
            raise SchemaError(f"prefixItems at {path or '/'} must be a list of schemas")
        items = schema.get("items", False if prefix else True)
        if isinstance(items, list):  # draft 4-7 tuple form
            prefix, items = items, schema.get("additionalItems", False)
        fixed = [self.visit(s, f"{hint}-{i}", f"{path}/prefixItems/{i}", depth + 1) for i, s in enumerate(prefix)]
        item = None if items is False else self.visit(items, f"{hint}-item", f"{path}/items", depth + 1)
        if fixed:
            if low > len(fixed) and item is None:
                raise SchemaError(f"minItems at {path or '/'} exceeds the prefixItems and no items are allowed")
            # The grammar always writes every prefix item (valid when minItems <= len).
            if high is not None and high < len(fixed):
                raise SchemaError(f"maxItems at {path or '/'} is below the number of prefixItems")
            body = f" {ws} \",\" {ws} ".join(fixed)
            if item is not None:
                more_low = max(0, low - len(fixed))
                more_high = None if high is None else high - len(fixed)
                if more_high != 0:
                    body += " " + repeat(f'"," {ws} {item} {ws}', more_low, more_high)
            return self.rule(hint or "array", f'"[" {ws} {body} {ws} "]"')
        if item is None:
            if low > 0:
                raise SchemaError(f"minItems at {path or '/'}: items are not allowed")
            return self.rule(hint or "array", f'"[" {ws} "]"')
        if high == 0:
            return self.rule(hint or "array", f'"[" {ws} "]"')
        tail = repeat(f'"," {ws} {item} {ws}', max(0, low - 1), None if high is None else high - 1)
        elements = f"{item} {ws} {tail}"
        if low == 0:
            elements = f"({elements})?"
        return self.rule(hint or "array", f'"[" {ws} {elements} "]"')

    def string(self, schema: dict[str, Any], hint: str, path: str) -> str:
        fmt = schema.get("format")
        low = self.count(schema, "minLength", path, 0)
        high = self.count(schema, "maxLength", path, None)
        if isinstance(fmt, str) and fmt in FORMATS:
            if low or high is not None:
                raise SchemaError(f"minLength/maxLength with format {fmt!r} at {path or '/'} are not supported")
            return self.rule(f"{fmt}-string", f'"\\"" {FORMATS[fmt]} "\\""')
        if low == 0 and high is None:
            return self.use("string")
        if high is not None and high < low:
            raise SchemaError(f"maxLength at {path or '/'} is below minLength")
        char = self.use("char")
        return self.rule(hint or "string", f'"\\"" {repeat(char, low, high)} "\\""')

    def count(self, schema: dict[str, Any], key: str, path: str, default: int | None) -> Any:
        value = schema.get(key, default)
        if value is default:
            return value
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise SchemaError(f"{key} at {path or '/'} must be a non-negative integer")
        if value > MAX_REPEAT:
            raise SchemaError(f"{key} at {path or '/'}: at most {MAX_REPEAT} is supported")
        return value

    def bounds(self, schema: dict[str, Any], path: str, integral: bool) -> tuple[float | None, float | None]:
        low = high = None
        for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            if key not in schema:
                continue
            value = schema[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise SchemaError(f"{key} at {path or '/'} must be a number")
            if key == "minimum":
                low = math.ceil(value) if integral else value
            elif key == "maximum":
                high = math.floor(value) if integral else value
            elif integral and key == "exclusiveMinimum":
                low = math.floor(value) + 1
            elif integral:
                high = math.ceil(value) - 1
            else:
                raise SchemaError(f"unsupported keyword {key!r} at {path or '/'} (for numbers)")
        return low, high

    def integer(self, schema: dict[str, Any], hint: str, path: str) -> str:
        low, high = self.bounds(schema, path, integral=True)
        if low is None and high is None:
            return self.use("integer")
        if low is not None and high is not None:
            if high < low:
                raise SchemaError(f"maximum at {path or '/'} is below minimum")
            if high - low < MAX_ENUM_RANGE:
                return self.choice([str(n) for n in range(int(low), int(high) + 1)], f"{hint}-range")
        if high is None and low in (0, 1):
            first = "[0-9]" if low == 0 else "[1-9]"
            return self.rule("natural" if low == 0 else "positive", f'{first} | [1-9] [0-9]{{1,15}}')
        raise SchemaError(f"unsupported keyword 'minimum'/'maximum' at {path or '/'}: only a range of "
                          f"fewer than {MAX_ENUM_RANGE} integers or a lower bound of 0 or 1 is supported")

    def number(self, schema: dict[str, Any], hint: str, path: str) -> str:
        low, high = self.bounds(schema, path, integral=False)
        if low is None and high is None:
            return self.use("number")
        if low == 0 and high is None:
            return self.rule("non-negative", '("0" | [1-9] [0-9]{0,15}) ("." [0-9]{1,16})?')
        raise SchemaError(f"unsupported keyword 'minimum'/'maximum' at {path or '/'}: for numbers only "
                          "minimum 0 is supported")
