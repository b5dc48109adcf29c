"""The search tools: file_glob_search (files, directories or both under a path, by glob) and
grep_search (lines matching a regular expression or a literal). Blocking: run in a thread."""
from __future__ import annotations

import os
import re
import time
from typing import Any

from llamaserve.server.tools.listing import TIME_BUDGET, glob_match, list_entries
from llamaserve.server.tools.params import boolean, integer, resolve, string

GLOB_MAX_RESULTS = 100
GREP_MAX_RESULTS = 100
GREP_FILE_MAX = 8 * 1024 * 1024  # bytes of one file grep reads
TYPES = ("file", "dir", "all")


def file_glob_search(params: dict[str, Any]) -> dict[str, Any]:
    path = string(params, "path")
    include = string(params, "include", "**")
    exclude = string(params, "exclude", "")
    kind = string(params, "type", "file")
    max_depth = max(0, integer(params, "max_depth", 0))
    limit = integer(params, "limit", GLOB_MAX_RESULTS)
    if limit < 1:
        return {"error": f"invalid limit: {limit} (expected 1 or more)"}
    limit = min(limit, GLOB_MAX_RESULTS)
    if kind not in TYPES:
        return {"error": f"invalid type: {kind} (expected \"file\", \"dir\" or \"all\")"}
    base = resolve(params, path)
    if not os.path.isdir(base):
        return {"error": f"path does not exist or is not a directory: {path}"}
    entries, truncated = list_entries(base, max_depth, dirs=kind != "file")
    matches = [e for e in entries
               if (kind == "all" or e.is_dir == (kind == "dir"))
               and glob_match(include, e.rel) and not (exclude and glob_match(exclude, e.rel))]
    shown = matches[:limit]
    text = "".join(f"{e.rel}{'/' if e.is_dir else ''}\n" for e in shown)
    text += f"\n---\nTotal matches: {len(matches)}\n"
    if len(matches) > limit:
        text += (f"[{limit} results limit reached ({len(matches)} total matches). Refine the glob pattern to "
                 "narrow the search.]\n")
    if truncated:
        text += "[results truncated: time budget or unreadable directory]\n"
    return {"plain_text_response": text,
            "entries": [{"path": e.rel, "type": "dir" if e.is_dir else "file"} for e in shown],
            "base": base}


def grep_search(params: dict[str, Any]) -> dict[str, Any]:
    path = string(params, "path")
    pattern = string(params, "pattern")
    include = string(params, "include", "**")
    exclude = string(params, "exclude", "")
    show_lineno = boolean(params, "return_line_numbers")
    literal = boolean(params, "literal")
    ignore_case = boolean(params, "ignore_case")
    ctx = max(0, integer(params, "context_lines", 0))
    try:
        regex = re.compile(re.escape(pattern) if literal else pattern, re.IGNORECASE if ignore_case else 0)
    except re.error as exc:
        return {"error": f"invalid regex: {exc}"}
    full = resolve(params, path)
    if os.path.isfile(full):
        files = [(full, path)]
    elif os.path.isdir(full):
        entries, _ = list_entries(full)
        files = [(os.path.join(full, e.rel), e.rel) for e in entries
                 if glob_match(include, e.rel) and not (exclude and glob_match(exclude, e.rel))]
    else:
        return {"error": f"path does not exist: {path}"}
    out: list[str] = []
    total, limited, late = 0, False, False
    show_num = show_lineno or ctx > 0
    deadline = time.monotonic() + TIME_BUDGET
    for file_path, shown in files:
        if limited:
            break
        if time.monotonic() > deadline:
            late = True
            break
        try:
            with open(file_path, "rb") as f:
                data = f.read(GREP_FILE_MAX)
        except OSError:
            continue
        if b"\0" in data[:8192]:
            continue  # binary
        lines = data.decode("utf-8", errors="replace").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        for i, line in enumerate(lines):
            if total >= GREP_MAX_RESULTS:
                limited = True
                break
            if not regex.search(line):
                continue
            for j in range(max(0, i - ctx), min(len(lines) - 1, i + ctx) + 1):
                mark = ":" if j == i else "-"
                out.append(f"{shown}{mark}{f'{j + 1}{mark}' if show_num else ''}{lines[j]}\n")
            if ctx:
                out.append("--\n")
            total += 1
    text = "".join(out) + f"\n---\nTotal matches: {total}\n"
    if limited:
        text += f"[{GREP_MAX_RESULTS} matches limit reached. Narrow the path/pattern/include to see more.]\n"
    if late:
        text += "[search stopped: time budget reached. Narrow the path/include to see the rest.]\n"
    return {"plain_text_response": text}
