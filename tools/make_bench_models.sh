#!/usr/bin/env bash
# Writes the random benchmark checkpoints used by docs/BENCHMARKS.md ("End-to-end prefill
# and decode") with tools/make_tiny_model.py. A model whose directory already holds a
# config.json is left alone, so re-running is cheap.
#
#   tools/make_bench_models.sh [OUT_DIR [NAME...]]   (default: build/bench-models, both)
#
# v2-lite-2layer       DeepSeek-V2-Lite shapes, 2 layers (1 dense + 1 MoE of 64 x 1408,
#                      2 shared, top-6), vocab 102400: ~1.09 G parameters, ~2.2 GB.
# mid-v2-lite-4layer   V2-Lite attention, 4 layers (1 dense + 3 MoE of 16 x 1408, 2 shared,
#                      top-6), vocab 32000: ~0.72 G parameters, ~1.4 GB.
#
# Needs Python 3 with numpy; falls back to tools/reference/.venv/bin/python when the
# system python has none. Set PYTHON to choose another interpreter.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out_dir="${1:-build/bench-models}"

pick_python() {
  if [[ -n "${PYTHON:-}" ]]; then
    echo "${PYTHON}"
  elif python3 -c 'import numpy' 2>/dev/null; then
    echo python3
  elif [[ -x "${repo_root}/tools/reference/.venv/bin/python" ]]; then
    echo "${repo_root}/tools/reference/.venv/bin/python"
  else
    echo "error: no python with numpy (pip install -r tools/requirements.txt)" >&2
    exit 1
  fi
}
python="$(pick_python)"

# V2-Lite's attention and RoPE (q_lora null, kv_lora 512, nope 128 / rope 64 / v 128,
# 16 heads, hidden 2048); the variant's defaults supply V2-Lite's YaRN settings (factor 40,
# original 4096, beta 32/1, mscale 0.707/0.707) and softmax greedy gating.
v2_lite_attention=(
  --variant v2-lite --hidden-size 2048 --num-heads 16 --q-lora-rank 0 --kv-lora-rank 512
  --qk-nope-head-dim 128 --qk-rope-head-dim 64 --v-head-dim 128
  --intermediate-size 10944 --moe-intermediate-size 1408 --n-shared-experts 2
  --num-experts-per-tok 6 --first-k-dense-replace 1 --moe-layer-freq 1
)

# The models named after OUT_DIR, or all of them.
wanted=("${@:2}")

make_model() {
  local name="$1"
  shift
  if ((${#wanted[@]} > 0)) && [[ " ${wanted[*]} " != *" ${name} "* ]]; then
    return
  fi
  local dir="${out_dir}/${name}"
  if [[ -f "${dir}/config.json" ]]; then
    echo "${dir}: exists, kept"
    return
  fi
  echo "${dir}: writing"
  local start=${SECONDS}
  "${python}" "${repo_root}/tools/make_tiny_model.py" --out "${dir}" "${v2_lite_attention[@]}" "$@"
  echo "${dir}: done in $((SECONDS - start)) s, $(du -sh "${dir}" | cut -f1)"
}

mkdir -p "${out_dir}"
make_model v2-lite-2layer --num-layers 2 --n-routed-experts 64 --vocab-size 102400 \
  --bos-token-id 100000 --eos-token-id 100001
make_model mid-v2-lite-4layer --num-layers 4 --n-routed-experts 16 --vocab-size 32000 \
  --bos-token-id 0 --eos-token-id 1
