"""Quantizing a GGUF with llama.cpp's quantizer: one run per destination at a time, written to
a temporary file and renamed into place, with progress from the growing output."""
from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

from llamaserve.models.errors import GGUFFormatError, ModelFileError, RequantizeRefused
from llamaserve.models.gguf import GGUFInfo, read_gguf_info
from llamaserve.models.quant_types import (
    FTYPE_TENSOR_TYPE,
    GGML_TYPE_SIZES,
    QUANT_TYPES,
    UNQUANTIZED,
    quant_name,
)
from llamaserve.native import ModelLoadError
from llamaserve.native import quantize as native_quantize

# one lock per destination file: two requests for the same result quantize it once
_quantize_locks: dict[Path, threading.Lock] = {}
_quantize_locks_guard = threading.Lock()


def expected_quantized_size(info: GGUFInfo, qtype: str) -> int:
    """About how large the quantized file will be (for progress)."""
    ggml_type = FTYPE_TENSOR_TYPE.get(QUANT_TYPES[qtype], 1)
    block, type_size = GGML_TYPE_SIZES[ggml_type]
    total = 0
    for t in info.tensors:
        if len(t.shape) >= 2 and t.shape[0] % block == 0:
            total += t.n_elements // block * type_size
        else:
            total += t.n_bytes
    return total + (info.file_size - info.weights_size)


def quantize(src: str | os.PathLike[str], quantization: str, dst: str | os.PathLike[str], *,
             allow_requantize: bool = False, progress: Callable[[float], None] | None = None,
             n_threads: int = 0, poll_interval: float = 0.1) -> Path:
    """Quantize `src` to `dst` with llama.cpp's quantizer (reusing `dst` if it is already a
    readable GGUF). The work goes to a temporary file renamed into place at the end, so a
    failed or interrupted run leaves nothing half-written. `progress(fraction)` is called
    from a watcher thread as the output grows, and with 1.0 at the end."""
    qtype = quant_name(quantization)
    src, dst = Path(src), Path(dst)
    try:
        info = read_gguf_info(src)
    except GGUFFormatError as exc:
        raise ModelFileError(f"quantize: {src.name} is not a usable GGUF: {exc}") from None
    if info.quantization not in UNQUANTIZED and not allow_requantize:
        raise RequantizeRefused(
            f"quantization: {src.name} is already quantized ({info.quantization}); requantizing to "
            f"{qtype} compounds the rounding error",
            'allow requantizing to do it anyway ("allow_requantize": true; --allow-requantize)')
    with _quantize_locks_guard:
        lock = _quantize_locks.setdefault(dst.absolute(), threading.Lock())
    with lock:
        if dst.is_file():
            try:
                read_gguf_info(dst)
                if progress:
                    progress(1.0)
                return dst
            except GGUFFormatError:
                dst.unlink(missing_ok=True)
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.{os.getpid()}.{threading.get_ident()}.partial")
        expected = max(1, expected_quantized_size(info, qtype))
        done = threading.Event()

        def watch() -> None:
            while not done.wait(poll_interval):
                try:
                    size = tmp.stat().st_size
                except OSError:
                    size = 0
                if progress:
                    progress(min(0.99, size / expected))

        watcher = threading.Thread(target=watch, name="llamaserve-quantize-progress", daemon=True)
        if progress:
            progress(0.0)
            watcher.start()
        try:
            native_quantize(str(src), str(tmp), QUANT_TYPES[qtype], allow_requantize, n_threads)
            os.replace(tmp, dst)
        except ModelLoadError as exc:
            raise ModelFileError(f"quantize: {str(exc).replace(str(tmp), dst.name)}") from None
        finally:
            done.set()
            if watcher.is_alive():
                watcher.join()
            tmp.unlink(missing_ok=True)
        if progress:
            progress(1.0)
        return dst
