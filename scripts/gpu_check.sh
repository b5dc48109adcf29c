#!/usr/bin/env bash
# The GPU check, for a machine with an NVIDIA GPU, its driver and nvcc: builds the CUDA wheel for
# this GPU (scripts/build_cuda_wheel.sh, CMAKE_CUDA_ARCHITECTURES=native), installs it in a venv,
# runs the engine tests with every layer offloaded, and the load rows of benchmarks/compare.py
# (--gpu-layers -1, 1 and 16 clients) against llama-server built the same way from the same tree.
# Everything it measured goes to $OUT (default gpu-check/): gpu.txt, build.txt, tests.txt,
# compare.txt and compare's results.md / results.json. About 10 minutes on one H100, most of it
# the two builds (16 cores).
#
#   scripts/gpu_check.sh                 # needs the default weights (scripts/fetch_default_model.py)
#   MODEL=model.gguf scripts/gpu_check.sh
#
# Offline (no package index): NO_BUILD_ISOLATION=1 builds with the Python's own scikit-build-core
# and pybind11, and WHEELS=dir installs llamaserve's dependencies from wheels in that folder.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu-check}"
mkdir -p "$OUT"
PYTHON="${PYTHON:-python3}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"

echo "== building the CUDA wheel for this GPU"
venv=build/gpu-venv
"$PYTHON" -m venv --system-site-packages "$venv"
export PYTHON="$venv/bin/python"
index=()
if [ -n "${WHEELS:-}" ]; then index=(--no-index --find-links "$WHEELS"); fi
if [ -n "${NO_BUILD_ISOLATION:-}" ]; then export PIP_NO_BUILD_ISOLATION=0; fi  # pip's inverted switch
CMAKE_CUDA_ARCHITECTURES="${CMAKE_CUDA_ARCHITECTURES:-native}" WHEEL_DIR=build/gpu-wheel \
  scripts/build_cuda_wheel.sh | tee "$OUT/build.txt"
wheel="$(ls -t build/gpu-wheel/llamaserve-*.whl | head -1)"
"$PYTHON" -m pip install -q "${index[@]}" --force-reinstall --no-deps "$wheel"
"$PYTHON" -m pip install -q "${index[@]}" "$wheel" pytest pytest-asyncio pytest-timeout httpx

export LLAMASERVE_TEST_GPU_LAYERS=-1
echo "== the engine tests, every layer on the GPU"
"$venv/bin/python" -c "from llamaserve.hosting.devices import device_notice, gpu_devices; \
print(device_notice(-1)); assert gpu_devices(), 'the CUDA build found no GPU'" | tee "$OUT/tests.txt"
# python/llamaserve is not importable from the checkout: the tests import the installed wheel
"$venv/bin/python" -m pytest -q -p no:randomly tests/test_engine_generation.py tests/test_engine_scheduling.py \
  tests/test_engine_text.py 2>&1 | tail -15 | tee -a "$OUT/tests.txt"

echo "== load rows, every layer offloaded, against llama-server built with CUDA from the same tree"
CMAKE_ARGS="-DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=${CMAKE_CUDA_ARCHITECTURES:-native}" \
  LLAMASERVE_BENCH_DIR="$PWD/build/gpu-bench" \
  "$venv/bin/python" benchmarks/compare.py --gpu-layers -1 --levels 1 16 --rounds 1 ${MODEL:+--model "$MODEL"} \
  2>&1 | tee "$OUT/compare.txt"
cp build/gpu-bench/results.md build/gpu-bench/results.json "$OUT/" 2>/dev/null || true
echo "== figures in $OUT"
