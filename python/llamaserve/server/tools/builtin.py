"""The built-in tools llama-server has, each with its definition (the OpenAI function shape
GET /tools lists) and how it runs. Off unless --tools names them: they read and write files and
run commands with the server's rights."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from llamaserve.server.tools import files, search, shell

Run = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Tool:
    name: str
    display_name: str
    description: str
    parameters: dict[str, Any]
    run: Run
    kind: str = "server"  # "server" (built in) or "mcp"
    write: bool = False  # changes something: a UI asks before it calls the tool
    uses_cwd: bool = True
    stream: Callable[[dict[str, Any]], AsyncIterator[str]] | None = None  # stream = true runs this

    def definition(self) -> dict[str, Any]:
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": self.parameters}}

    def to_json(self) -> dict[str, Any]:
        return {"display_name": self.display_name, "tool": self.name, "type": self.kind,
                "permissions": {"write": self.write}, "uses_cwd": self.uses_cwd, "definition": self.definition()}


def _threaded(fn: Callable[[dict[str, Any]], dict[str, Any]]) -> Run:
    async def run(params: dict[str, Any]) -> dict[str, Any]:
        return await asyncio.to_thread(fn, params)
    return run


def _schema(required: list[str], **properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required}


def _p(kind: str, description: str, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "description": description, **extra}


GLOB_RULES = ("A pattern without '/' (e.g. \"*.py\") matches a file's name at any depth; one with '/' matches the "
              "path relative to the search directory, as if it began with \"**/\" unless it starts with \"**\" "
              "or '/'.")

BUILTIN: tuple[Tool, ...] = (
    Tool("read_file", "Read file",
         "Read a text file, optionally only lines start_line to end_line (1-based, inclusive). With append_loc, "
         "each line starts with its number and an arrow (\"12\u2192...\").",
         _schema(["path"], path=_p("string", "Path of the file"),
                 start_line=_p("integer", "First line to read, 1-based (default: 1)"),
                 end_line=_p("integer", "Last line to read, inclusive (default: the last)"),
                 append_loc=_p("boolean", "Start each line with its line number")),
         _threaded(files.read_file)),
    Tool("file_glob_search", "File search",
         "List the files (or, with type \"dir\" or \"all\", directories too, shown with a trailing '/') under a "
         "directory that match a glob. Files git ignores are left out inside a git work tree, and directories "
         "such as .git, node_modules, build and dist are never entered. " + GLOB_RULES,
         _schema(["path"], path=_p("string", "Directory to search"),
                 include=_p("string", "Glob of the entries to list (default: **)"),
                 exclude=_p("string", "Glob of the entries to leave out"),
                 type=_p("string", "\"file\" (default), \"dir\" or \"all\""),
                 max_depth=_p("integer", "How deep to go: 1 lists the directory's own entries (default 0: no limit)"),
                 limit=_p("integer", f"Most results (default and at most {search.GLOB_MAX_RESULTS})")),
         _threaded(search.file_glob_search)),
    Tool("grep_search", "Grep search",
         "Find the lines matching a pattern (a regular expression, or literal text) in a file or in the files "
         "under a directory, each shown with its file's path. Skips what file_glob_search skips. "
         "include/exclude: " + GLOB_RULES,
         _schema(["path", "pattern"], path=_p("string", "File or directory to search"),
                 pattern=_p("string", "Regular expression (literal text with literal = true)"),
                 include=_p("string", "Glob of the files to search (default: **)"),
                 exclude=_p("string", "Glob of the files to leave out"),
                 return_line_numbers=_p("boolean", "Show line numbers"),
                 literal=_p("boolean", "The pattern is literal text (default: false)"),
                 ignore_case=_p("boolean", "Match case-insensitively (default: false)"),
                 context_lines=_p("integer", "Lines shown before and after each match (default: 0)")),
         _threaded(search.grep_search)),
    Tool("exec_shell_command", "Execute shell command",
         "Run a shell command; returns its output (stdout and stderr together) and exit code.",
         _schema(["command"], command=_p("string", "Shell command to run"),
                 timeout=_p("integer", f"Seconds it may run (default {shell.DEFAULT_TIMEOUT}, at most "
                                       f"{shell.MAX_TIMEOUT})"),
                 max_output_size=_p("integer", f"Bytes of output kept (default and at most {shell.MAX_OUTPUT})")),
         shell.exec_shell_command, write=True, stream=shell.exec_stream),
    Tool("write_file", "Write file",
         "Write a file (its directories are made if missing), replacing what it held. Use edit_file to change "
         "part of a file.",
         _schema(["path", "content"], path=_p("string", "Path of the file"), content=_p("string", "What to write")),
         _threaded(files.write_file), write=True),
    Tool("edit_file", "Edit file",
         "Replace exact text in a file. Every edits[].old_text must occur exactly once in the file as it is now "
         "(edits do not see each other's results) and edits must not overlap: merge neighbouring changes into "
         "one edit. Use write_file to replace the whole file.",
         _schema(["path", "edits"], path=_p("string", "Path of the file"),
                 edits=_p("array", "One or more replacements", items=_schema(
                     ["old_text", "new_text"], old_text=_p("string", "Text to replace, unique in the file"),
                     new_text=_p("string", "Its replacement")))),
         _threaded(files.edit_file), write=True),
    Tool("get_info", "Get Runtime Info", "The operating system and the current working directory.",
         _schema([]), shell.get_info),
)

NAMES = tuple(tool.name for tool in BUILTIN)


def enabled(names: tuple[str, ...]) -> tuple[Tool, ...]:
    """The tools --tools names ("all": every one); the names were checked with the config."""
    return tuple(tool for tool in BUILTIN if "all" in names or tool.name in names)
