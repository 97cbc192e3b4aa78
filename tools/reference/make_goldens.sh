#!/usr/bin/env bash
# Regenerates tests/data/goldens/*.safetensors from the committed tiny models with
# Hugging Face transformers (see tools/reference/README.md).
#
#   tools/reference/make_goldens.sh                  # goldens only
#   tools/reference/make_goldens.sh --remake-models  # rewrite models/tiny-* first
#
# MLA_REF_VENV chooses the virtual environment (default tools/reference/.venv, git-ignored);
# it is created and filled from tools/reference/requirements.txt when missing or stale.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="${MLA_REF_VENV:-${root}/tools/reference/.venv}"
reqs="${root}/tools/reference/requirements.txt"

if [[ ! -x "${venv}/bin/python" ]]; then
  python3 -m venv "${venv}"
fi
# Reinstall only when the pinned requirements changed since the last install.
if ! cmp -s "${reqs}" "${venv}/.installed-requirements.txt"; then
  "${venv}/bin/pip" install --quiet --upgrade pip
  "${venv}/bin/pip" install --quiet -r "${reqs}"
  cp "${reqs}" "${venv}/.installed-requirements.txt"
fi

cd "${root}"
if [[ "${1:-}" == "--remake-models" ]]; then
  "${venv}/bin/python" tools/make_tiny_model.py --variant v2-lite --out models/tiny-v2-lite
  "${venv}/bin/python" tools/make_tiny_model.py --variant v3 --out models/tiny-v3
  "${venv}/bin/python" tools/make_tiny_model.py --variant v32 --out models/tiny-v32
fi
"${venv}/bin/python" tools/reference/make_goldens.py models/tiny-v2-lite models/tiny-v3 models/tiny-v32 \
  --out-dir tests/data/goldens
"${venv}/bin/python" tools/reference/make_goldens.py models/tiny-v2-lite models/tiny-v3 models/tiny-v32 \
  --out-dir tests/data/goldens --kv-cache-dtype bf16
