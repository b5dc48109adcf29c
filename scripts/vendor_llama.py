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


def fetch_sdist() -> Path:
    """Return the pinned sdist, downloading it with pip into the cache once."""
    sdist = CACHE / SDIST_NAME
    if not sdist.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            # --no-binary only for this package: its build backend still comes as wheels.
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps",
                   "--no-binary", "llama-cpp-python", f"llama-cpp-python=={PIN_VERSION}",
                   "-d", tmp]
            print("vendor_llama: downloading llama-cpp-python", PIN_VERSION, "source", flush=True)
            result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            got = Path(tmp) / SDIST_NAME
            if result.returncode != 0 or not got.exists():
                raise VendorError(f"pip download failed:\n{result.stdout[-2000:]}")
            got.replace(sdist)
    actual = sha256_of(sdist)
    if actual != PIN_SHA256:
        sdist.unlink()
        raise VendorError(
            f"{SDIST_NAME}: sha256 {actual} does not match the pin {PIN_SHA256}; "
            "the file was removed, refusing to build from it")
    return sdist


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", metavar="DIR", type=Path,
                        help="extract the whole llama.cpp tree (tools included) into DIR")
    args = parser.parse_args()
    try:
        if args.full:
            vendor(args.full.resolve(), full=True)
        else:
            vendor()
    except VendorError as exc:
        print(f"vendor_llama: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
