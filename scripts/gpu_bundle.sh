#!/usr/bin/env bash
# Packs what tests/gpu/run_on_device.sh needs into one folder, to carry to a GPU machine
# that has an NVIDIA driver and the CUDA 13 runtime libraries (cudart, cuBLAS, cuBLASLt)
# but none of the build's dependencies (Abseil, gRPC, protobuf, GoogleTest): the gpu test
# binaries, mla-server, mla-recall, cuda_mla_decode_bench and mla_engine_bench built here
# for sm_90, without debug info, at their paths under the build folder; every shared
# library they load except the C/C++ runtime and CUDA's; and the checkout and build paths
# compiled into them (run_on_device.sh links the checkout there).
#
#   scripts/gpu_bundle.sh [BUILD_DIR [BUNDLE_DIR]]    # defaults: build/ci, build/gpu-dist
#
# BUILD_DIR must have CUDA enabled (the ci preset does where nvcc is found). The working
# tree and the bundle travel together, so the bundle is kept under 48 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build/ci}"
bundle="${2:-build/gpu-dist}"
max_mib=48

if [[ ! -f "${build}/CMakeCache.txt" ]]; then
  if [[ "${build}" == build/ci ]]; then
    cmake --preset ci >/dev/null
  else
    echo "gpu_bundle: ${build} is not configured" >&2
    exit 1
  fi
fi
if [[ ! -d "${build}/engine/backend/cuda/CMakeFiles/mla_cuda.dir" ]]; then
  echo "gpu_bundle: ${build} was configured without CUDA (no nvcc found?)" >&2
  exit 1
fi

targets=(device_test cuda_mla_decode_test cuda_pointwise_test cuda_gemm_lt_test cuda_indexer_test
         cuda_moe_routing_test cuda_backend_test cuda_sparse_test cuda_engine_test cuda_server_test
         mla-server mla-recall cuda_mla_decode_bench cuda_indexer_bench mla_engine_bench)
echo "gpu_bundle: building ${targets[*]} in ${build}"
cmake --build "${build}" -j"$(nproc)" --target "${targets[@]}" >/dev/null

rm -rf "${bundle}"
mkdir -p "${bundle}/tree" "${bundle}/lib"
binaries=()
for t in "${targets[@]}"; do
  path="$(find "${build}" -type f -name "${t}" -perm -u+x -not -path '*/CMakeFiles/*' | head -1)"
  if [[ -z "${path}" ]]; then
    echo "gpu_bundle: no binary for ${t} under ${build}" >&2
    exit 1
  fi
  rel="${path#"${build}"/}"
  mkdir -p "${bundle}/tree/$(dirname "${rel}")"
  strip --strip-debug -o "${bundle}/tree/${rel}" "${path}"
  binaries+=("${path}")
done

# Libraries: all that the binaries load, less glibc, the C++ runtime (the device's own is
# as new or newer) and CUDA's (they must match the device's driver, and cuBLASLt alone is
# larger than the bundle may be).
skip='^(linux-vdso|ld-linux|libc\.|libm\.|libdl\.|libpthread\.|librt\.|libgcc_s\.|libstdc\+\+\.|libcuda\.|libcudart\.|libcublas\.|libcublasLt\.)'
ldd "${binaries[@]}" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' | sort -u |
  while read -r name path; do
    [[ "${name}" =~ ${skip} ]] && continue
    cp -L "${path}" "${bundle}/lib/${name}"
  done

echo "${PWD}" >"${bundle}/source_dir"
echo "${build}" >"${bundle}/build_dir"
git rev-parse --short HEAD >"${bundle}/revision" 2>/dev/null || echo unknown >"${bundle}/revision"
size_mib=$(($(du -sb "${bundle}" | cut -f1) / 1048576))
echo "gpu_bundle: ${bundle}: ${#binaries[@]} binaries, $(ls "${bundle}/lib" | wc -l) libraries," \
  "${size_mib} MiB (revision $(cat "${bundle}/revision"))"
if ((size_mib > max_mib)); then
  echo "gpu_bundle: over ${max_mib} MiB: the working tree and the bundle travel together" >&2
  exit 1
fi
