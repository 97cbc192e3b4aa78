#!/usr/bin/env bash
# The GPU check on a machine that has both a GPU and the build's dependencies (a
# developer's workstation): builds the bundle (scripts/gpu_bundle.sh) and runs it in place
# (tests/gpu/run_on_device.sh). On a GPU machine without the dependencies, make the bundle
# on a CPU machine and carry it instead (docs/BENCHMARKS.md, "The GPU check").
#
#   scripts/gpu_check.sh [BUILD_DIR]      # default build/ci; results in $OUT or BUILD_DIR/gpu_check
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build/ci}"
export OUT="${OUT:-${build}/gpu_check}"
scripts/gpu_bundle.sh "${build}" "${build}/gpu-dist"
exec tests/gpu/run_on_device.sh "${build}/gpu-dist"
