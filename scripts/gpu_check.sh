#!/usr/bin/env bash
# One-shot check of the CUDA backend on a machine with a GPU: builds the CUDA sources and
# every gpu-labelled test, runs them, then the decode kernel benchmark. Prints which
# device ran and a pass/fail summary; with $OUT set, the logs land there too.
#
#   scripts/gpu_check.sh [BUILD_DIR]      # default build/gpu
#
# Needs nvcc and a CUDA driver; the tests skip (and this script fails) without a device.
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build/gpu}"
out="${OUT:-${build}/gpu_check}"
mkdir -p "${out}"
jobs="$(nproc)"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
  | tee "${out}/device.txt" || { echo "gpu_check: no NVIDIA driver (nvidia-smi failed)" >&2; exit 1; }

echo "== configure (${build})"
cmake -S . -B "${build}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMLA_WERROR=ON -DMLA_CUDA=ON \
  -DMLA_BUILD_BENCHMARKS=ON >"${out}/configure.log" 2>&1 || { tail -30 "${out}/configure.log"; exit 1; }
echo "== build (${jobs} jobs)"
targets=(device_test cuda_mla_decode_test cuda_pointwise_test cuda_gemm_lt_test
         cuda_moe_routing_test cuda_backend_test cuda_server_test cuda_mla_decode_bench)
cmake --build "${build}" -j"${jobs}" --target "${targets[@]}" >"${out}/build.log" 2>&1 \
  || { grep -E "error" -A3 "${out}/build.log" | head -60; exit 1; }

echo "== gpu tests"
status=0
ctest --test-dir "${build}" -L gpu --output-on-failure -j1 --timeout 600 \
  >"${out}/ctest.log" 2>&1 || status=$?
grep -E "tests passed|Passed|Failed|\*\*\*|SKIPPED|1 - cosine" "${out}/ctest.log" | tail -80
if grep -q "Skipped" "${out}/ctest.log"; then
  echo "gpu_check: some gpu tests skipped on a GPU machine (see ${out}/ctest.log)" >&2
  status=1
fi

echo "== cuda_mla_decode_bench"
"${build}/bench/cuda_mla_decode_bench" >"${out}/decode_bench.txt" 2>&1 || status=$?
tail -40 "${out}/decode_bench.txt"
exit "${status}"
