"""The registry: which GGUF files a server may load, and by which names.

- Discovery: the *.gguf files of a models folder (default ~/.cache/llamaserve/models), the
  models of the config file, and the embedded default model, each read from its header only.
  A broken or truncated file is listed with its error; it never breaks the listing.
- Names: a model's id is its lower-case file stem (`llama-2-7b-chat.q4_0`). Files that differ
  only by a quantization suffix are variants of one model named by the stem without it
  (`llama-2-7b-chat`); the spec's six names resolve to files named by the usual conventions.
  A name is never a path unless paths are explicitly allowed.
- Quantization: a variant the folder lacks is quantized into a cache, reused next time; the
  cache is bounded (least recently used files not in use make room, else QuantizeCacheFull).
- Safety: a file is probed in a child process before a server opens it (probe.py); a file
  found bad is listed with its error from then on.
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llamaserve.models.config import ModelSettings, load_models_config, parse_models, parse_settings
from llamaserve.models.errors import (
    GGUFFormatError, ModelFileError, ModelNotFound, QuantizeCacheFull, RequantizeRefused)
from llamaserve.models.gguf import GGUFInfo, read_gguf_info
from llamaserve.models.memory import gigabytes
from llamaserve.models.probe import FileProbe
from llamaserve.models.names import SPEC_ALIASES, SPLIT_SUFFIX, check_name, fold, split_quant_suffix
from llamaserve.models.quant_types import DEFAULT_ORDER, PRECISION_ORDER, UNQUANTIZED, quant_name
from llamaserve.models.quantizer import quantize
from llamaserve.models.verdicts import VerdictStore

log = logging.getLogger("llamaserve.models")

DEFAULT_MODELS_DIR = Path("~/.cache/llamaserve/models")
DEFAULT_QUANTIZE_CACHE = Path("~/.cache/llamaserve/quantized")


@dataclass
class ModelEntry:
    """One GGUF file the registry knows."""
    id: str
    path: Path
    base: str  # the model this file is a variant of
    quantization: str | None  # from the header (or the file name when the header is bad)
    info: GGUFInfo | None = field(default=None, repr=False)
    error: str | None = None
    aliases: tuple[str, ...] = ()
    settings: ModelSettings = field(default_factory=ModelSettings)
    is_default: bool = False
    source: str = "models_dir"  # models_dir | config | default (embedded) | path

    @property
    def ok(self) -> bool:
        return self.info is not None and self.error is None

    @property
    def file_size(self) -> int:
        if self.info is not None:
            return self.info.file_size
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    def names(self) -> tuple[str, ...]:
        return (self.id, *self.aliases)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.id,
            "format": "gguf",
            "file": self.path.name,
            "size": gigabytes(self.file_size),
            "size_bytes": self.file_size,
            "quantization": self.quantization,
            "aliases": list(self.aliases),
            "base": self.base,
        }
        if self.info is not None:
            out.update(self.info.summary())
        if self.error is not None:
            out["error"] = self.error
        return out


class ModelRegistry:
    """The GGUF files a server may load, by name. Thread-safe; cheap to rescan (headers are
    cached by file size and modification time)."""

    def __init__(self, models_dir: str | os.PathLike[str] | None = None, *,
                 config_file: str | os.PathLike[str] | None = None,
                 include_default: bool = True, default_model: str | os.PathLike[str] | None = None,
                 allow_paths: bool = False, cache_dir: str | os.PathLike[str] | None = None,
                 cache_limit: int | None = None, probe_timeout: float = 0.0,
                 verdicts_file: str | os.PathLike[str] | None = None) -> None:
        config = load_models_config(config_file) if config_file else {}
        folder = models_dir if models_dir is not None else config.get("models_dir")
        self.models_dir = Path(folder or DEFAULT_MODELS_DIR).expanduser()
        self.cache_dir = Path(cache_dir or DEFAULT_QUANTIZE_CACHE).expanduser()
        self.cache_limit = cache_limit  # bytes the quantized cache may hold (None: no limit)
        if verdicts_file is None:
            from llamaserve.default_model import cache_root

            verdicts_file = cache_root() / "probes.json"
        # probe_timeout 0: no probing here, but the verdicts found earlier still list bad files
        self.probe = FileProbe(VerdictStore(Path(verdicts_file)), probe_timeout)
        self.allow_paths = allow_paths
        self.include_default = include_default
        # what "default" names: a file or a model name (the server's --model); None: the
        # embedded default model
        self._default_model = default_model
        self.defaults = parse_settings("defaults", config.get("defaults", {}))
        self._configured = parse_models(config.get("models", {}))
        self._lock = threading.RLock()
        self._info_cache: dict[Path, tuple[tuple[int, int], GGUFInfo | None, str | None]] = {}
        self._entries: list[ModelEntry] = []
        self._scanned = False

    # -- scanning ---------------------------------------------------------------------------

    def default_path(self) -> Path | None:
        """The embedded default model's file (None when set-up has not fetched it, or without
        include_default)."""
        if not self.include_default:
            return None
        try:
            from llamaserve.default_model import default_model_path

            return default_model_path()
        except Exception as exc:  # noqa: BLE001 - no default model package: list without it
            log.debug("no default model: %s", exc)
            return None

    def _info(self, path: Path) -> tuple[GGUFInfo | None, str | None]:
        try:
            st = path.stat()
            signature = (st.st_size, st.st_mtime_ns)
        except OSError as exc:
            return None, f"cannot read the file: {exc.strerror or exc}"
        cached = self._info_cache.get(path)
        if cached is not None and cached[0] == signature:
            return cached[1], cached[2]
        try:
            info, error = read_gguf_info(path), None
        except GGUFFormatError as exc:
            info, error = None, str(exc)
        self._info_cache[path] = (signature, info, error)
        return info, error

    def _entry(self, path: Path, source: str, *, id_: str | None = None) -> ModelEntry:
        stem = path.name[:-5] if path.name.lower().endswith(".gguf") else path.stem
        stem = SPLIT_SUFFIX.sub("", stem)
        base, suffix_quant = split_quant_suffix(stem)
        info, error = self._info(path)
        verdict = self.probe.known(path) if error is None else None
        if verdict is not None and not verdict.ok:
            error = f"{verdict.reason}: {verdict.detail}" if verdict.detail else verdict.reason
        quant = info.quantization if info is not None else suffix_quant
        return ModelEntry(id=(id_ or stem).lower(), path=path, base=fold(base), quantization=quant,
                          info=info, error=error, source=source)

    def _files(self) -> list[Path]:
        folder = self.models_dir
        if not folder.is_dir():
            return []
        out = []
        try:
            children = sorted(folder.iterdir())
        except OSError as exc:
            log.warning("cannot list %s: %s", folder, exc)
            return []
        for p in children:
            if not p.name.lower().endswith(".gguf") or p.name.startswith("."):
                continue
            split = SPLIT_SUFFIX.search(p.name[:-5])
            if split and int(split.group(1)) != 1:
                continue  # later shards of a split model load through the first one
            try:
                if p.is_file():
                    out.append(p)
            except OSError:
                continue
        return out

    def scan(self) -> list[ModelEntry]:
        """Re-read the folder (unchanged files are not re-parsed) and return the entries."""
        with self._lock:
            entries: list[ModelEntry] = []
            seen_paths: set[Path] = set()
            for cm in self._configured:
                path = cm.file if cm.file.is_absolute() else self.models_dir / cm.file
                entry = self._entry(path, "config", id_=cm.name)
                if not path.is_file() and entry.error is None:
                    entry.error = "file not found"
                entry.aliases = cm.aliases
                entry.settings = cm.settings
                entries.append(entry)
                seen_paths.add(path.absolute())
            for p in self._files():
                if p.absolute() in seen_paths:
                    continue
                entries.append(self._entry(p, "models_dir"))
                seen_paths.add(p.absolute())
            embedded = self.default_path()
            if embedded is not None:
                self._listed(entries, embedded, "default")
            if self.include_default:  # and the other embedded models (Gemma 3 270M) found here
                from llamaserve.default_model import embedded_models

                for path in embedded_models().values():
                    self._listed(entries, path, "default")
            target = self._default_entry(entries, embedded)
            if target is not None:
                target.is_default = True
                target.aliases = tuple(dict.fromkeys((*target.aliases, "default")))
            self._dedupe_ids(entries)
            self._assign_spec_aliases(entries)
            self._entries = entries
            self._scanned = True
            return list(entries)

    def _listed(self, entries: list[ModelEntry], path: Path, source: str) -> ModelEntry:
        """The entry of `path` (the same file, or a link to it), added when missing."""
        found = next((e for e in entries if e.path.absolute() == path.absolute()), None)
        if found is None:
            real = _realpath(path)
            found = next((e for e in entries if _realpath(e.path) == real), None)
        if found is None:
            found = self._entry(path, source)
            entries.append(found)
        return found

    def _default_entry(self, entries: list[ModelEntry], embedded: Path | None) -> ModelEntry | None:
        wanted = self._default_model
        if wanted is None:
            return self._listed(entries, embedded, "default") if embedded is not None else None
        path = Path(wanted).expanduser()
        if path.is_file():
            return self._listed(entries, path, "path")
        name = str(wanted).strip().lower()
        return next((e for e in entries if name in e.names()), None) or next(
            (e for e in entries if e.base == fold(name)), None)

    @staticmethod
    def _dedupe_ids(entries: list[ModelEntry]) -> None:
        seen: dict[str, int] = {}
        for e in entries:
            if e.id in seen:
                seen[e.id] += 1
                e.id = f"{e.id}-{seen[e.id]}"
            else:
                seen[e.id] = 1

    @staticmethod
    def _assign_spec_aliases(entries: list[ModelEntry]) -> None:
        taken = {n for e in entries for n in e.names()}
        for alias, bases in SPEC_ALIASES.items():
            if alias in taken:
                continue
            group = _best_group(entries, bases)
            if group:
                chosen = _preferred(group)
                chosen.aliases = (*chosen.aliases, alias)

    def entries(self) -> list[ModelEntry]:
        with self._lock:
            if not self._scanned:
                return self.scan()
            return list(self._entries)

    def listing(self) -> list[dict[str, Any]]:
        return [e.describe() for e in self.scan()]

    # -- lookup -----------------------------------------------------------------------------

    def resolve(self, name: str, *, rescan: bool = True) -> ModelEntry:
        """The entry a name means: a configured name or alias, a file id, "default", a
        model's base name (its preferred variant), or one of the spec's names. Paths are
        refused unless allowed. ModelNotFound otherwise."""
        check_name(name, allow_paths=self.allow_paths)
        entries = self.scan() if rescan else self.entries()
        wanted = name.strip().lower()
        for e in entries:
            if wanted in e.names():
                return e
        folded = fold(wanted)
        group = [e for e in entries if e.base == folded]
        if not group:
            base, _ = split_quant_suffix(folded)
            group = [e for e in entries if fold(e.id) == folded or (e.base == base and base != folded)]
            if len(group) > 1:
                group = [e for e in group if fold(e.id) == folded] or group
        if not group and folded in SPEC_ALIASES:
            group = _best_group(entries, SPEC_ALIASES[folded])
        if not group:
            group = [e for e in entries if e.info is not None and e.info.name and fold(e.info.name) == folded]
        if group:
            return _preferred(group)
        if self.allow_paths:
            path = Path(name).expanduser()
            if path.is_file():
                return self._entry(path.absolute(), "path")
        # Over HTTP: where the operator adds models, not where files live on this machine.
        raise ModelNotFound(f"model: no model named {name[:64]!r}; {self.available(folder=False)}",
                            "GET /api/v1/models or /v1/models lists the models")

    SHOWN_NAMES = 8  # named in a not-found error; the rest are counted

    def available(self, folder: bool = True) -> str:
        """What a not-found error tells: the names there are (`default` first) and where a GGUF
        file may be put to add one (the folder's path only where the operator reads it)."""
        names = [e.id for e in self.entries()]
        if self.include_default:
            names.insert(0, "default")
        shown = ", ".join(names[:self.SHOWN_NAMES])
        if len(names) > self.SHOWN_NAMES:
            shown += f" and {len(names) - self.SHOWN_NAMES} more"
        there = f"models here: {shown}" if names else "no models here"
        where = self.models_dir if folder else "the server's models folder (--models-dir)"
        return f"{there}; to add one, put its .gguf file in {where}"

    def variants(self, entry: ModelEntry) -> list[ModelEntry]:
        """The files of the same model (same base name), the entry itself included."""
        out = [e for e in self.entries() if e.base == entry.base and e.source != "default"]
        if entry not in out:
            out.insert(0, entry)
        return out

    def settings_for(self, entry: ModelEntry) -> ModelSettings:
        return entry.settings.merged(self.defaults)

    def quantized_path(self, entry: ModelEntry, quantization: str) -> Path:
        """Where the cache keeps `entry` quantized to `quantization` (source path, size and
        mtime are in the name, so a changed source never reuses a stale result)."""
        st = entry.path.stat()
        digest = hashlib.sha256(f"{entry.path.absolute()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()
        return self.cache_dir / f"{entry.base}.{digest[:12]}.{quantization}.gguf"

    def for_quantization(self, entry: ModelEntry, quantization: str, *, allow_requantize: bool = False
                         ) -> tuple[ModelEntry, str | None]:
        """The file to load for `entry` at `quantization`: (entry of a variant of that type, None),
        or (the source to quantize from, the type) when the cache must make it first; a
        cached result counts as a variant. UnknownQuantization, RequantizeRefused."""
        qtype = quant_name(quantization)
        variants = [e for e in self.variants(entry) if e.ok]
        for e in [entry, *variants]:
            if e.ok and e.quantization == qtype:
                return e, None
        sources = sorted(variants or [entry], key=_precision_rank)
        source = sources[0]
        if not source.ok:
            raise ModelFileError(f"model: {entry.id!r} cannot be read: {source.error}")
        cached = self.quantized_path(source, qtype)
        if cached.is_file():
            info, error = self._info(cached)
            if info is not None:
                _touch(cached)  # recently used: the last the cache gives up
                return self._cache_entry(entry, cached, qtype, info), None
        if source.quantization not in UNQUANTIZED and not allow_requantize:
            raise RequantizeRefused(
                f"quantization: {entry.id!r} has no unquantized file (the best is "
                f"{source.quantization}); requantizing {source.quantization} to {qtype} compounds "
                f"the rounding error", 'send "allow_requantize": true to quantize it anyway')
        return source, qtype

    def quantize(self, entry: ModelEntry, quantization: str, *, allow_requantize: bool = False,
                 progress: Callable[[float], None] | None = None, n_threads: int = 0) -> ModelEntry:
        """The entry of `entry` at `quantization`, quantizing into the cache if needed."""
        target, qtype = self.for_quantization(entry, quantization, allow_requantize=allow_requantize)
        if qtype is None:
            return target
        out = quantize(target.path, qtype, self.quantized_path(target, qtype),
                       allow_requantize=allow_requantize, progress=progress, n_threads=n_threads)
        info, error = self._info(out)
        if info is None:
            raise ModelFileError(f"quantization: the quantized file is not readable: {error}")
        return self._cache_entry(entry, out, qtype, info)

    def make_room(self, needed: int, in_use: set[Path]) -> None:
        """Before quantizing into the cache: delete its least recently used files that no
        model uses until `needed` more bytes fit in cache_limit; QuantizeCacheFull when even
        that is not enough."""
        if self.cache_limit is None:
            return
        files = []
        for path in self.cache_dir.glob("*.gguf") if self.cache_dir.is_dir() else ():
            try:
                st = path.stat()
            except OSError:
                continue
            files.append((st.st_atime, st.st_size, path))
        held = sum(size for _, size, _ in files)
        for _, size, path in sorted(files):
            if held + needed <= self.cache_limit:
                break
            if path.absolute() in in_use:
                continue
            log.info("quantize cache: removing %s (least recently used) to make room", path.name)
            path.unlink(missing_ok=True)
            held -= size
        if held + needed > self.cache_limit:
            raise QuantizeCacheFull(
                f"quantization: the result (about {gigabytes(needed)}) does not fit in the quantize "
                f"cache ({gigabytes(held)} of {gigabytes(self.cache_limit)} held by models in use)",
                "unload a quantized model, or raise --quantize-cache-size")

    @staticmethod
    def _cache_entry(entry: ModelEntry, path: Path, qtype: str, info: GGUFInfo) -> ModelEntry:
        """A quantized file of the cache: named like a variant would be (<model>.<type>)."""
        return ModelEntry(id=f"{entry.base}.{qtype.lower()}", path=path, base=entry.base, quantization=qtype,
                          info=info, aliases=entry.aliases, settings=entry.settings, source="cache")

    def entry_for_path(self, path: str | os.PathLike[str]) -> ModelEntry:
        """The entry of a file: the listed one when the registry lists it, else a new one
        (for files the operator named directly, like the server's --model)."""
        path = Path(path)
        real = _realpath(path)
        for e in self.entries():
            if e.path == path or _realpath(e.path) == real:
                return e
        return self._entry(path, "path")


def _touch(path: Path) -> None:
    """Mark a cached file used: its access time (the cache's order), not its modification time."""
    try:
        os.utime(path, ns=(time.time_ns(), path.stat().st_mtime_ns))
    except OSError:
        pass


def _realpath(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:
        return path.absolute()


def _precision_rank(e: ModelEntry) -> int:
    q = e.quantization or ""
    return PRECISION_ORDER.index(q) if q in PRECISION_ORDER else len(PRECISION_ORDER)


def _preferred(group: list[ModelEntry]) -> ModelEntry:
    """The variant a bare model name loads: a healthy file first, then the usual serving
    quantization order."""
    def rank(e: ModelEntry) -> tuple[int, int, str]:
        q = e.quantization or ""
        return (0 if e.ok else 1, DEFAULT_ORDER.index(q) if q in DEFAULT_ORDER else len(DEFAULT_ORDER), e.id)
    return min(group, key=rank)


def _best_group(entries: list[ModelEntry], bases: tuple[str, ...]) -> list[ModelEntry]:
    for base in bases:
        group = [e for e in entries if e.base == base and e.source != "default"]
        if group:
            return group
    return []
