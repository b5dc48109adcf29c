"""Fill-in-the-middle prompts (code editors' completion at the cursor), framed from the model's
FIM tokens as llama-server's /infill frames them:

    [extra files] [BOS] <PRE> prefix prompt <SUF> suffix <MID>

where the extra files are other files of the project (with a repository token and a file
separator when the model has them, the repository-level pattern, else separated by a plain
snippet line), the prefix is the text before the cursor, the prompt what the user typed after
it, and the suffix the text after the cursor. The model writes the middle. The parts are cut to
llama-server's budgets: the prefix's end and the suffix's start fit in one batch (3:1), the
extra files' end fill what the context has left beyond a batch and twice the completion."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llamaserve.errors import InvalidRequest
from llamaserve.generation_params import INT32_MAX, check_text

Pieces = str | Sequence[str | int]  # a text, or texts and token ids mixed
Tokenize = Callable[[str, bool], list[int]]  # (text, parse_special) -> ids, no BOS/EOS added

REPOSITORY = "myproject\n"  # llama-server names no project or current file: the same names
CURRENT_FILE = "filename\n"
DEFAULT_FILENAME = "tmp"
SNIPPET_SEPARATOR = "\n\n--- snippet ---\n\n"  # between extra files when there is no file separator


@dataclass(frozen=True)
class ExtraFile:
    filename: str
    text: str


@dataclass(frozen=True)
class FimTokens:
    """The model's FIM token ids (None: it has none)."""
    prefix: int | None
    suffix: int | None
    middle: int | None
    repository: int | None
    file_separator: int | None

    @classmethod
    def of(cls, metadata: Mapping[str, Any]) -> FimTokens:
        def token(name: str) -> int | None:
            value = metadata[f"fim_{name}_token_id"]
            return None if value < 0 else value

        return cls(token("pre"), token("suf"), token("mid"), token("rep"), token("sep"))

    def missing(self) -> list[str]:
        """The tokens infill needs that the model lacks."""
        return [name for name in ("prefix", "suffix", "middle") if getattr(self, name) is None]


def check_pieces(name: str, value: Any) -> Pieces:
    """input_prefix / input_suffix: a text, or a list of texts and token ids (llama-server's mixed form)."""
    if isinstance(value, str):
        return check_text(name, value)
    if not isinstance(value, list):
        raise InvalidRequest(f"{name}: must be a string or a list of strings and token ids")
    for i, piece in enumerate(value):
        if isinstance(piece, str):
            check_text(f"{name}[{i}]", piece)
        elif isinstance(piece, bool) or not isinstance(piece, int) or not 0 <= piece <= INT32_MAX:
            raise InvalidRequest(f"{name}[{i}]: must be a string or a token id")
    return value


def check_extra(name: str, value: Any) -> list[ExtraFile]:
    """input_extra: [{"filename": str (optional), "text": str} or ExtraFile, ...]; other keys are left
    alone, as llama-server does (editor plugins send a chunk's time too)."""
    shape = f'{name}: must be a list of {{"filename": string, "text": string}}'
    if not isinstance(value, (list, tuple)):
        raise InvalidRequest(shape)
    files = []
    for i, chunk in enumerate(value):
        if isinstance(chunk, ExtraFile):
            files.append(chunk)
            continue
        if not isinstance(chunk, dict):
            raise InvalidRequest(shape)
        if "text" not in chunk:
            raise InvalidRequest(f"{name}[{i}].text: required")
        files.append(ExtraFile(check_text(f"{name}[{i}].filename", chunk.get("filename", DEFAULT_FILENAME)),
                               check_text(f"{name}[{i}].text", chunk["text"])))
    return files


def fim_prompt(tokenize: Tokenize, model: str, tokens: FimTokens, bos: int | None, *, input_prefix: Pieces,
               input_suffix: Pieces, input_extra: Sequence[ExtraFile], prompt: str | Sequence[int],
               n_batch: int, n_ctx: int, n_predict: int) -> list[int]:
    """The prompt's token ids. `model` names the model in the error when it has no FIM tokens;
    `bos`: the BOS token when the vocabulary adds one."""
    missing = tokens.missing()
    if tokens.prefix is None or tokens.suffix is None or tokens.middle is None:
        raise InvalidRequest(f"{model} cannot fill in the middle: it has no FIM {', '.join(missing)} token "
                             "(infill needs a code model trained with them)")

    def ids(pieces: Pieces) -> list[int]:
        if isinstance(pieces, str):
            return tokenize(pieces, False)
        return [t for p in pieces for t in (tokenize(p, False) if isinstance(p, str) else [p])]

    prompt_ids = tokenize(prompt, True) if isinstance(prompt, str) else list(prompt)
    prefix, suffix = ids(input_prefix), ids(input_suffix)
    prefix = prefix[len(prefix) - min(len(prefix), 3 * (n_batch // 4)):]  # its end: nearest the cursor
    suffix = suffix[:max(0, n_batch // 4 - (2 + len(prompt_ids)))]  # its start
    extra = _extra_files(tokenize, tokens, input_extra)
    extra = extra[len(extra) - min(len(extra), max(0, n_ctx - n_batch - 2 * n_predict)):]
    # The extra files come first, before even the BOS: where llama-server puts them.
    head = [bos] if bos is not None else []
    return [*extra, *head, tokens.prefix, *prefix, *prompt_ids, tokens.suffix, *suffix, tokens.middle]


def _extra_files(tokenize: Tokenize, tokens: FimTokens, files: Sequence[ExtraFile]) -> list[int]:
    out: list[int] = []
    if tokens.repository is not None:
        out += [tokens.repository, *tokenize(REPOSITORY, False)]
    for file in files:
        if tokens.file_separator is not None:
            out += [tokens.file_separator, *tokenize(file.filename + "\n", False)]
        else:
            out += tokenize(SNIPPET_SEPARATOR, False)
        out += tokenize(file.text, False)
    if tokens.file_separator is not None:  # the file being edited
        out += [tokens.file_separator, *tokenize(CURRENT_FILE, False)]
    return out
