"""Build llama.cpp's own tools from the same vendored tree, in a scratch folder."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = Path(os.environ.get("LLAMASERVE_BENCH_DIR", ROOT / "benchmarks" / "out"))

sys.path.insert(0, str(ROOT / "scripts"))
import vendor_llama  # noqa: E402


def build(targets: list[str], cmake_args: list[str] | None = None) -> Path:
    """Configure and build `targets`; return the folder holding the binaries."""
    source = vendor_llama.vendor(SCRATCH / "llama.cpp", full=True)
    options = [
        "-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_BUILD_TOOLS=ON", "-DLLAMA_BUILD_SERVER=ON",
        "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_CURL=OFF",
        "-DLLAMA_OPENSSL=OFF", "-DGGML_RPC=OFF", "-DLLAMA_BUILD_UI=OFF",
        "-DGGML_NATIVE=OFF",  # as llamaserve's own default build; CMAKE_ARGS can change both
        *(cmake_args or []), *os.environ.get("CMAKE_ARGS", "").split(),
    ]
    # One build folder per set of options: ggml derives defaults (the x86 instruction
    # flags) from GGML_NATIVE at first configure, so a reused cache would keep stale ones.
    build_dir = SCRATCH / ("build-" + hashlib.sha1(" ".join(options).encode()).hexdigest()[:10])
    configure = ["cmake", "-S", str(source), "-B", str(build_dir), "-G", "Ninja", *options]
    print("building", ", ".join(targets), "in", build_dir, flush=True)
    subprocess.run(configure, check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", str(build_dir), "--target", *targets,
                    "-j", str(os.cpu_count() or 2)], check=True, stdout=subprocess.DEVNULL)
    return build_dir / "bin"
