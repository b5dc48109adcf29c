#!/usr/bin/env bash
# Build llamaserve's CUDA wheel from the vendored llama.cpp with this machine's nvcc.
#
#   scripts/build_cuda_wheel.sh                              # the default architectures
#   CMAKE_CUDA_ARCHITECTURES=90 scripts/build_cuda_wheel.sh  # one, for a quick check
#
# cuBLAS comes from NVIDIA's Python wheel for nvcc's CUDA major version (nvidia-cublas for 13,
# nvidia-cublas-cu12 for 12), installed into the Python that runs this script if it is not
# there; the wheel then finds cuBLAS and the CUDA runtime in site-packages at run time (install
# nvidia-cublas and nvidia-cuda-runtime beside it; README, "CUDA"). Nothing else is downloaded.
# The build folder (build/cuda-<wheel tag>) is kept, so a rebuild after a Python change is fast.
# The wheel lands in dist/ (or $WHEEL_DIR). JOBS (default: all cores) bounds the compiles.
set -euo pipefail
cd "$(dirname "$0")/.."

ARCHS="${CMAKE_CUDA_ARCHITECTURES:-80;86;89;90}"
WHEEL_DIR="${WHEEL_DIR:-dist}"
PYTHON="${PYTHON:-python}"
export CMAKE_BUILD_PARALLEL_LEVEL="${JOBS:-$(nproc)}"

command -v nvcc >/dev/null || { echo "nvcc is not on the PATH: install NVIDIA's CUDA toolkit" >&2; exit 2; }
test -f vendor/llama.cpp/CMakeLists.txt || "$PYTHON" scripts/vendor_llama.py
major="$(nvcc --version | sed -n 's/.*release \([0-9]*\)\..*/\1/p')"
if [ "$major" -ge 13 ]; then cublas_wheel="nvidia-cublas==${major}.*"; else cublas_wheel="nvidia-cublas-cu${major}"; fi

# Where the wheel keeps cuBLAS: nvidia/cu13/ (13), nvidia/cublas/ (12).
find_cublas() {
  "$PYTHON" - <<'PY'
import importlib.util, pathlib
for name in ("nvidia.cu13", "nvidia.cublas"):
    try:
        spec = importlib.util.find_spec(name)
    except ModuleNotFoundError:
        continue
    for root in (spec.submodule_search_locations or []) if spec else []:
        lib = pathlib.Path(root) / "lib"
        if any(lib.glob("libcublas.so*")):
            print(root)
            raise SystemExit
PY
}
root="$(find_cublas)"
if [ -z "$root" ]; then
  echo "== installing $cublas_wheel (cuBLAS for CUDA $major)"
  "$PYTHON" -m pip install -q "$cublas_wheel"
  root="$(find_cublas)"
fi
[ -n "$root" ] || { echo "no cuBLAS found after installing $cublas_wheel" >&2; exit 2; }
cublas="$(ls "$root"/lib/libcublas.so* | head -1)"
cublaslt="$(ls "$root"/lib/libcublasLt.so* | head -1)"
echo "== nvcc $(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p'); architectures $ARCHS; cuBLAS $cublas"

# GGML_CUDA_NO_VMM: no link to the driver library (libcuda), so the wheel imports and runs on
# the CPU where no NVIDIA driver is installed; the CUDA pool then uses plain allocations.
export CMAKE_ARGS="-DGGML_CUDA=ON -DGGML_CUDA_NO_VMM=ON -DCMAKE_CUDA_ARCHITECTURES=${ARCHS} \
 -DCUDA_cublas_LIBRARY=${cublas} -DCUDA_cublasLt_LIBRARY=${cublaslt} \
 -DCMAKE_CUDA_FLAGS=-I${root}/include -DCMAKE_CXX_FLAGS=-I${root}/include ${CMAKE_ARGS:-}"
start=$(date +%s)
mkdir -p build
log=build/cuda-build.log
set +o pipefail
"$PYTHON" -m pip wheel . --no-deps -w "$WHEEL_DIR" -v -C "build-dir=build/cuda-{wheel_tag}" 2>&1 | tee "$log" \
  | grep --line-buffered -E '^ *\[[0-9]+/[0-9]+\]|error:|Created wheel'
status=${PIPESTATUS[0]}
set -o pipefail
[ "$status" -eq 0 ] || { echo "the build failed: see $log" >&2; exit 1; }
wheel="$(ls -t "$WHEEL_DIR"/llamaserve-*.whl | head -1)"
echo "== $wheel: $(du -h "$wheel" | cut -f1), built in $(( $(date +%s) - start )) s"
echo "== install it with: pip install $wheel nvidia-cuda-runtime '$cublas_wheel'"
