#!/usr/bin/env bash
# Generates the Python protobuf and gRPC modules of the mla_client package from the
# repository's proto/ tree.
#
#   client/python/generate_stubs.sh [OUT_DIR]
#
# OUT_DIR defaults to src/mla_client/_proto (for working from a checkout); the package
# build runs this script too, writing into its build directory. Environment:
#   PYTHON         interpreter that has grpcio-tools installed (default: python3)
#   MLA_PROTO_DIR  the proto/ root (default: ../../proto next to this script)
#
# protoc names generated modules after the .proto paths (mla/v1/inference_pb2.py) and
# imports them absolutely (`from mla.v1 import inference_pb2`). The modules are flattened
# into one private package with relative imports instead, so that they cannot clash with
# other top-level `mla` or `grpc.health` modules; the .proto file names registered in
# the descriptor pool stay the canonical ones.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python3}"
proto_dir="${MLA_PROTO_DIR:-${here}/../../proto}"
out_dir="${1:-${here}/src/mla_client/_proto}"
protos=(mla/v1/inference.proto grpc/health/v1/health.proto)

for proto in "${protos[@]}"; do
  if [[ ! -f "${proto_dir}/${proto}" ]]; then
    echo "generate_stubs.sh: ${proto_dir}/${proto} not found (set MLA_PROTO_DIR)" >&2
    exit 1
  fi
done
if ! "${python}" -c 'import grpc_tools.protoc' 2>/dev/null; then
  echo "generate_stubs.sh: ${python} lacks grpcio-tools (pip install grpcio-tools)" >&2
  exit 1
fi

staging="$(mktemp -d)"
trap 'rm -rf "${staging}"' EXIT
"${python}" -m grpc_tools.protoc -I "${proto_dir}" --python_out="${staging}" \
  --pyi_out="${staging}" --grpc_python_out="${staging}" "${protos[@]}"

mkdir -p "${out_dir}"
for proto in "${protos[@]}"; do
  stem="${proto%.proto}"
  package="$(dirname "${proto}" | tr / .)"
  for suffix in _pb2.py _pb2.pyi _pb2_grpc.py; do
    sed -e "s/^from ${package//./\\.} import /from . import /" \
      "${staging}/${stem}${suffix}" >"${out_dir}/$(basename "${stem}")${suffix}"
  done
done
if grep -qE '^(from|import) (mla|grpc\.health)' "${out_dir}"/*_pb2*.py; then
  echo "generate_stubs.sh: an absolute import of a generated module was left" >&2
  exit 1
fi
[[ -f "${out_dir}/__init__.py" ]] || echo '"""Generated protobuf and gRPC modules."""' >"${out_dir}/__init__.py"
