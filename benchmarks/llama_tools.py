"""Build llama.cpp's own tools from the same vendored tree, in a scratch folder."""
from __future__ import annotations

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
    build_dir = SCRATCH / "build"
    configure = [
        "cmake", "-S", str(source), "-B", str(build_dir), "-G", "Ninja",
        "-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_BUILD_TOOLS=ON", "-DLLAMA_BUILD_SERVER=ON",
        "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_CURL=OFF",
        "-DLLAMA_OPENSSL=OFF", "-DGGML_RPC=OFF", "-DLLAMA_BUILD_UI=OFF",
        *(cmake_args or []), *os.environ.get("CMAKE_ARGS", "").split(),
    ]
    print("building", ", ".join(targets), "in", build_dir, flush=True)
    subprocess.run(configure, check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", str(build_dir), "--target", *targets,
                    "-j", str(os.cpu_count() or 2)], check=True, stdout=subprocess.DEVNULL)
    return build_dir / "bin"
