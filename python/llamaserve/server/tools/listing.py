"""What the search tools walk: the files under a directory (git's view of it inside a work
tree: tracked and untracked but not ignored; otherwise a walk that skips junk directories),
glob patterns as llama-server matches them, and a time budget."""
from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass
from functools import lru_cache

JUNK_DIRS = frozenset({".git", ".svn", ".hg", "node_modules", "__pycache__", ".venv", "venv", "dist", "build",
                       "target", ".cache", ".idea", ".vscode"})
TIME_BUDGET = 15.0  # seconds one listing may take
MAX_ENTRIES = 200_000


@dataclass(frozen=True)
class Entry:
    rel: str  # '/'-separated, relative to the base
    is_dir: bool


@lru_cache(maxsize=256)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1:end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")


def glob_match(pattern: str, rel: str) -> bool:
    """A pattern without '/' matches the basename at any depth; one with '/' the whole relative
    path, anchored with '**/' unless it starts with '**' or '/'."""
    if pattern in ("", "**"):
        return True
    if "/" not in pattern:
        return _glob_regex(pattern).match(rel.rsplit("/", 1)[-1]) is not None
    if pattern.startswith("/"):
        pattern = pattern[1:]
    elif not pattern.startswith("**"):
        pattern = "**/" + pattern
    return _glob_regex(pattern).match(rel) is not None


def depth(rel: str) -> int:
    return rel.count("/") + 1


def _git_files(base: str) -> list[str] | None:
    """git's files under `base` (None outside a work tree or without git)."""
    try:
        inside = subprocess.run(["git", "-C", base, "rev-parse", "--is-inside-work-tree"],
                                capture_output=True, text=True, timeout=5)
        if inside.returncode != 0 or inside.stdout.strip() != "true":
            return None
        out = subprocess.run(["git", "-C", base, "ls-files", "--cached", "--others", "--exclude-standard"],
                             capture_output=True, text=True, timeout=TIME_BUDGET)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return [line for line in out.stdout.splitlines() if line][:MAX_ENTRIES]


def list_entries(base: str, max_depth: int = 0, dirs: bool = False) -> tuple[list[Entry], bool]:
    """(entries sorted by path, whether the listing was cut short). Junk directories are listed
    themselves (they stay selectable) but never walked; with dirs, directories are listed as well
    (without .gitignore filtering)."""
    truncated = False
    entries: list[Entry] = []
    git = None if dirs else _git_files(base)
    if git is not None:
        for rel in git:
            if max_depth and depth(rel) > max_depth:
                continue
            if any(part in JUNK_DIRS for part in rel.split("/")[:-1]):
                continue
            entries.append(Entry(rel, False))
        return sorted(entries, key=lambda e: e.rel), truncated
    deadline = time.monotonic() + TIME_BUDGET
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        if time.monotonic() > deadline or len(entries) >= MAX_ENTRIES:
            truncated = True
            break
        try:
            with os.scandir(os.path.join(base, rel_dir) if rel_dir else base) as it:
                children = list(it)
        except OSError:
            truncated = True
            continue
        for child in children:
            rel = f"{rel_dir}/{child.name}" if rel_dir else child.name
            if max_depth and depth(rel) > max_depth:
                continue
            try:
                is_dir = child.is_dir(follow_symlinks=False)
                is_file = child.is_file()
            except OSError:
                continue
            if is_dir:
                if dirs:
                    entries.append(Entry(rel, True))
                if child.name not in JUNK_DIRS:
                    stack.append(rel)
            elif is_file:
                entries.append(Entry(rel, False))
    return sorted(entries, key=lambda e: e.rel), truncated
