#!/usr/bin/env python3
"""Fill vendor/llama.cpp/ from the pinned llama-cpp-python source distribution.

No line of llama.cpp is committed to this repository: this script fetches the sdist
with pip (version and sha256 pinned), checks it, and copies the parts our build needs.
Running it again with the tree already in place does nothing.

    python scripts/vendor_llama.py              # fill vendor/llama.cpp
    python scripts/vendor_llama.py --full DIR   # whole llama.cpp tree (tools too) for benchmarks
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

PIN_VERSION = "0.3.36"
PIN_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
LLAMA_COMMIT = "0c1e5709"

ROOT = Path(__file__).resolve().parent.parent
DEST = ROOT / "vendor" / "llama.cpp"
CACHE = Path(os.environ.get("LLAMASERVE_CACHE", Path.home() / ".cache" / "llamaserve"))
SDIST_NAME = f"llama_cpp_python-{PIN_VERSION}.tar.gz"
TREE_PREFIX = f"llama_cpp_python-{PIN_VERSION}/vendor/llama.cpp/"
# What the library build needs, plus the test vocabularies and chat templates.
PARTS = ("CMakeLists.txt", "cmake/", "ggml/", "src/", "include/", "common/", "vendor/", "LICENSE",
         "models/templates/")
STAMP = ".llamaserve-vendored"


class VendorError(RuntimeError):
    pass


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pip_fetch(requirement: str, filename: str, sha256: str, *pip_args: str,
              cache: Path = CACHE) -> Path:
    """Return `filename` of the pinned `requirement`, downloaded with pip (no dependencies)
    into `cache` once, and checked against `sha256` every time."""
    got = cache / filename
    if not got.exists():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", *pip_args, requirement, "-d", tmp]
            print("downloading", requirement, flush=True)
            result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            fetched = Path(tmp) / filename
            if result.returncode != 0 or not fetched.exists():
                raise VendorError(f"pip download failed:\n{result.stdout[-2000:]}")
            fetched.replace(got)
    actual = sha256_of(got)
    if actual != sha256:
        got.unlink()
        raise VendorError(
            f"{filename}: sha256 {actual} does not match the pin {sha256}; "
            "the file was removed, refusing to use it")
    return got


def fetch_sdist() -> Path:
    """Return the pinned llama-cpp-python sdist, downloading it with pip into the cache once."""
    # --no-binary only for this package: its build backend still comes as wheels.
    return pip_fetch(f"llama-cpp-python=={PIN_VERSION}", SDIST_NAME, PIN_SHA256,
                     "--no-binary", "llama-cpp-python")


def wanted(relative: str, full: bool) -> bool:
    if full:
        return True
    if relative.startswith("models/"):
        name = relative.rsplit("/", 1)[-1]
        return relative.startswith("models/templates/") or (
            relative.count("/") == 1 and name.startswith("ggml-vocab-") and name.endswith(".gguf"))
    return any(relative == p or (p.endswith("/") and relative.startswith(p)) for p in PARTS)


def extract(sdist: Path, dest: Path, full: bool) -> int:
    count = 0
    dest_resolved = dest.resolve()
    with tarfile.open(sdist) as tar:
        for member in tar:
            if not member.name.startswith(TREE_PREFIX) or not (member.isfile() or member.isdir()):
                continue
            relative = member.name[len(TREE_PREFIX):]
            if not relative or not wanted(relative, full):
                continue
            target = (dest / relative).resolve()
            if dest_resolved not in target.parents and target != dest_resolved:
                raise VendorError(f"unsafe path in sdist: {member.name}")
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as src, target.open("wb") as out:
                shutil.copyfileobj(src, out)
            count += 1
    return count


def vendor(dest: Path = DEST, full: bool = False) -> Path:
    stamp = dest / STAMP
    expected = f"{PIN_VERSION} {PIN_SHA256} {'full' if full else 'lib'}\n"
    if stamp.exists() and stamp.read_text() == expected:
        return dest
    sdist = fetch_sdist()
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    count = extract(sdist, dest, full)
    stamp.write_text(expected)
    print(f"vendor_llama: {count} files of llama.cpp {LLAMA_COMMIT} in {dest}", flush=True)
    return dest


def run_step(script: str, step: Callable[[], object]) -> int:
    """A set-up script's exit status: 0, or 1 with the VendorError said on stderr."""
    try:
        step()
    except VendorError as exc:
        print(f"{script}: error: {exc}", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", metavar="DIR", type=Path,
                        help="extract the whole llama.cpp tree (tools included) into DIR")
    args = parser.parse_args()
    return run_step("vendor_llama", lambda: vendor(args.full.resolve(), full=True) if args.full else vendor())


if __name__ == "__main__":
    sys.exit(main())
