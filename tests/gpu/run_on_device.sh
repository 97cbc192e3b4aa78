#!/usr/bin/env bash
# The GPU check in one run, on a machine with one NVIDIA GPU and the CUDA 13 runtime but
# none of the build's dependencies, from a bundle made beside the source on a CPU machine
# (scripts/gpu_bundle.sh) and carried along with the checkout:
#   1. the device: nvidia-smi;
#   2. every gpu test binary (kernels against the CPU backend, the whole model against the
#      goldens, mla-server --device=cuda over gRPC); a skip counts as a failure here;
#   3. cuda_mla_decode_bench: the split-KV decode kernel's GB/s (16 heads) and TFLOP/s
#      (128 heads) over batch × context with the default (tensor-core) split kernel, and on
#      a few shapes its ring, 64-row (mma.sync and wgmma) and k-split variants, the
#      CUDA-core one, the default planned for one CTA per multiprocessor and the
#      tensor-core kernels on an FP8 cache, with ncu's hardware counters of the default
#      kernel and the ring variant on one shape at its end (decode_bench_more.txt);
#      DeepSeek-V3.2: sparse decode over 2048 gathered keys against as many read densely,
#      then cuda_indexer_bench, the lightning indexer's decode GB/s, its selection's share
#      and its prefill row tiles, with bf16 keys and then FP8 ones (v32_bench.txt);
#   4. a V2-Lite-shaped random model (2 layers, tools/make_bench_models.sh) served by the
#      engine on the GPU: decode tokens/s at batch 1 / 16 / 64, prefill tokens/s of a 4K
#      prompt, and a new engine's first request with and without the start-up warm-up
#      (mla_engine_bench --device=cuda);
#   5. the founding question on the GPU: the demo model's needle sweep (1K / 2K / 4K x 11
#      depths x 3 kinds x 3 samples, tools/train_demo/recall_check.sh) served by
#      mla-server --device=cuda (CUDA graphs off, then on) and --device=cpu, and how many
#      answers agree.
# Each step has its own time limit and the run goes on past a failing one; the whole run
# stays under $BUDGET_S seconds (default 450): a step that would start with too little
# time left is skipped and says so (a failure).
#
#   tests/gpu/run_on_device.sh [BUNDLE_DIR]      # default build/gpu-dist
#
# Results go to $OUT (default BUNDLE_DIR/out), 8 files (the most the device tool brings
# back): summary.txt (one line per step, pass/fail counts, the verdict), nvidia-smi.txt,
# gpu_tests.log, decode_bench.txt, decode_bench_more.txt (ncu's counters at its end, where
# ncu can read them), v32_bench.txt, engine_bench.txt (the bench model's log at its end)
# and recall.txt. Exit status 0 only when every step passed.
set -uo pipefail
cd "$(dirname "$0")/../.."
bundle="${1:-build/gpu-dist}"
out="${OUT:-${bundle}/out}"
mkdir -p "${out}"
summary="${out}/summary.txt"
: >"${summary}"
t0=${SECONDS}
failed=0
deadline=$((t0 + ${BUDGET_S:-450}))
say() { echo "[$((SECONDS - t0)) s] $*" | tee -a "${summary}"; }
# The time limit of a step: its own, or what is left of the budget if less.
limit() {
  local left=$((deadline - SECONDS))
  echo $((left < $1 ? (left > 1 ? left : 1) : $1))
}
# False (and a failure recorded) when fewer than $1 seconds are left for step $2.
have_time() {
  if ((deadline - SECONDS < $1)); then
    fail "$2: skipped, $((deadline - SECONDS)) s of the budget left"
    return 1
  fi
}
fail() {
  say "FAIL: $*"
  failed=1
}

if [[ ! -f "${bundle}/source_dir" ]]; then
  say "FAIL: no bundle at ${bundle} (make it with scripts/gpu_bundle.sh and carry it)"
  exit 1
fi
say "bundle ${bundle}, revision $(cat "${bundle}/revision")"

# --- 1. The device -------------------------------------------------------------------
if ! nvidia-smi >"${out}/nvidia-smi.txt" 2>&1; then
  say "FAIL: nvidia-smi failed: no NVIDIA driver"
  exit 1
fi
say "device: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader)"

# --- The bundle's binaries where their compiled-in paths point -------------------------
src="$(cat "${bundle}/source_dir")"
build_rel="$(cat "${bundle}/build_dir")"
if [[ "$(realpath -m "${src}")" != "$(realpath "${PWD}")" ]]; then
  if [[ -e "${src}" || -L "${src}" ]]; then
    if [[ "$(realpath "${src}")" != "$(realpath "${PWD}")" ]]; then
      say "FAIL: the binaries expect the checkout at ${src}, which is something else here"
      exit 1
    fi
  else
    mkdir -p "$(dirname "${src}")" && ln -s "${PWD}" "${src}"
  fi
fi
mkdir -p "${build_rel}"
cp -a "${bundle}/tree/." "${build_rel}/"

# CUDA's libraries come from the machine: the loader's cache, else the toolkit's folders,
# else the Python wheels (nvidia/cu13/lib, nvidia/cublas/lib).
cuda_dirs=""
if ! ldconfig -p 2>/dev/null | grep -q 'libcublasLt\.so\.13'; then
  for lib in $(find /usr/local/cuda* /usr/local/lib /usr/lib /opt -name 'libcublasLt.so.13' \
                 2>/dev/null | head -1) \
             $(python3 -c 'import nvidia, os; print(os.path.dirname(nvidia.__path__[0]))' \
                 2>/dev/null | xargs -r -I{} find {} -name 'libcublasLt.so.13' 2>/dev/null |
               head -1); do
    cuda_dirs="${cuda_dirs}:$(dirname "${lib}")"
  done
  for lib in $(find /usr/local/cuda* /usr/local/lib /usr/lib /opt -name 'libcudart.so.13' \
                 2>/dev/null | head -1); do
    cuda_dirs="${cuda_dirs}:$(dirname "${lib}")"
  done
fi
export LD_LIBRARY_PATH="${PWD}/${bundle}/lib${cuda_dirs}${LD_LIBRARY_PATH:+:${LD_LIBRARY_PATH}}"
missing="$(find "${bundle}/tree" -type f -exec ldd {} \; 2>/dev/null | grep 'not found' | sort -u)"
if [[ -n "${missing}" ]]; then
  say "FAIL: libraries not found (LD_LIBRARY_PATH=${LD_LIBRARY_PATH}):"
  echo "${missing}" | tee -a "${summary}"
  exit 1
fi

# --- 2. The gpu tests ------------------------------------------------------------------
tests_log="${out}/gpu_tests.log"
: >"${tests_log}"
# run_test BINARY LABEL [VAR=VALUE...]: one test binary, its log section headed by LABEL.
# $TEST_LIMIT (default 240 s) bounds it: a kernel that never returns costs that much.
run_test() {
  local t=$1 label=$2
  shift 2
  local bin="${build_rel}/tests/gpu/${t}" rc passed failed_n skipped
  echo "===== ${label}" >>"${tests_log}"
  env "$@" timeout "$(limit "${TEST_LIMIT:-240}")" "${bin}" --gtest_color=no >>"${tests_log}" 2>&1
  rc=$?
  passed=$(sed -n "/^===== ${label}\$/,\$p" "${tests_log}" | grep -c '^\[       OK \]')
  failed_n=$(sed -n "/^===== ${label}\$/,\$p" "${tests_log}" | grep -c '^\[  FAILED  \] [A-Za-z]')
  skipped=$(sed -n "/^===== ${label}\$/,\$p" "${tests_log}" | grep -c '^\[  SKIPPED \] [A-Za-z]')
  if ((rc != 0 || skipped > 0)); then
    fail "${label}: exit ${rc}, ${passed} passed, ${failed_n} failed, ${skipped} skipped"
  else
    say "ok: ${label}: ${passed} passed"
  fi
}
for t in device_test cuda_pointwise_test cuda_gemm_lt_test cuda_indexer_test cuda_mla_decode_test \
         cuda_moe_routing_test cuda_backend_test cuda_sparse_test cuda_engine_test cuda_server_test; do
  # The decode test runs every split kernel, the opt-in ones never run on a device yet:
  # a tighter limit, so that one that hangs leaves the rest of the budget.
  TEST_LIMIT=$([[ ${t} == cuda_mla_decode_test ]] && echo 120 || echo 240) run_test "${t}" "${t}"
done
# The engine again with CUDA graphs on (off by default until measured): preemption,
# prefix hits and seeded sampling through recorded and replayed decode steps.
run_test cuda_engine_test "cuda_engine_test with MLA_CUDA_GRAPHS=on" MLA_CUDA_GRAPHS=on
run_test cuda_server_test "cuda_server_test with MLA_CUDA_GRAPHS=on" MLA_CUDA_GRAPHS=on
# The model and the engine with the CUDA-core decode kernel (the tensor-core one is the
# default where it takes the widths; cuda_mla_decode_test runs every split kernel itself).
run_test cuda_backend_test "cuda_backend_test with MLA_CUDA_DECODE_KERNEL=simt" \
  MLA_CUDA_DECODE_KERNEL=simt
run_test cuda_engine_test "cuda_engine_test with MLA_CUDA_DECODE_KERNEL=simt" \
  MLA_CUDA_DECODE_KERNEL=simt
# The tensor-core kernel's k-split, ring and 64-row variants and the 64-row kernel's wgmma
# build (opt-in until measured)
# through the whole model.
for k in mma_ksplit mma_ring mma_rows64 mma_wgmma; do
  TEST_LIMIT=150 run_test cuda_backend_test "cuda_backend_test with MLA_CUDA_DECODE_KERNEL=${k}" \
    MLA_CUDA_DECODE_KERNEL=${k}
done
grep -hE '1 - cosine|delta logprob' "${tests_log}" | tee -a "${summary}"

# --- 3. The decode kernel's benchmark ----------------------------------------------------
# Without a usable device the benchmark says "nothing measured" and exits 0.
if have_time 30 cuda_mla_decode_bench; then
  if timeout "$(limit 150)" "${build_rel}/bench/cuda_mla_decode_bench" \
       >"${out}/decode_bench.txt" 2>&1 && ! grep -q 'nothing measured' "${out}/decode_bench.txt"; then
    say "ok: cuda_mla_decode_bench (decode_bench.txt)"
  else
    fail "cuda_mla_decode_bench (decode_bench.txt)"
  fi
fi
# On a few shapes, in the same run as the default above: the ring, 64-row (mma.sync and
# wgmma) and k-split variants, the CUDA-core kernel, the default planned for one CTA per multiprocessor, and
# the tensor-core kernels on an FP8 cache.
if have_time 40 "cuda_mla_decode_bench --kernel=mma_ring / mma_rows64 / mma_wgmma / mma_ksplit / simt / --ctas_per_sm=1 / --fp8"; then
  {
    for k in mma_ring mma_rows64 mma_wgmma mma_ksplit; do
      echo "## --kernel=${k}"
      timeout "$(limit 60)" "${build_rel}/bench/cuda_mla_decode_bench" --kernel=${k} \
        --batches=1,16,128 --contexts=4096,131072
      echo "rc $?"
    done
    echo "## --kernel=simt"
    timeout "$(limit 60)" "${build_rel}/bench/cuda_mla_decode_bench" --kernel=simt \
      --batches=1,16,128 --contexts=4096,131072
    echo "rc $?"
    echo "## --ctas_per_sm=1 (the default kernel)"
    timeout "$(limit 60)" "${build_rel}/bench/cuda_mla_decode_bench" --ctas_per_sm=1 \
      --batches=1,16,128 --contexts=4096,131072
    echo "rc $?"
    for k in mma mma_ring mma_ksplit; do
      echo "## --fp8 --kernel=${k}"
      timeout "$(limit 60)" "${build_rel}/bench/cuda_mla_decode_bench" --fp8 --kernel=${k} \
        --batches=1,16,128 --contexts=4096,131072
      echo "rc $?"
    done
  } >"${out}/decode_bench_more.txt" 2>&1
  if grep -q '^rc [^0]' "${out}/decode_bench_more.txt"; then
    fail "cuda_mla_decode_bench comparisons (decode_bench_more.txt)"
  else
    say "ok: cuda_mla_decode_bench comparisons (decode_bench_more.txt)"
  fi
fi
# DeepSeek-V3.2's sparse decode: 2048 selected keys gathered through the block table,
# against the same number of keys read densely in the same run; then its indexer.
if have_time 30 "cuda_mla_decode_bench --topk=2048"; then
  if timeout "$(limit 60)" "${build_rel}/bench/cuda_mla_decode_bench" --topk=2048 \
       --heads=16,128 --batches=1,16,64 --contexts=8192,131072 \
       >"${out}/v32_bench.txt" 2>&1; then
    say "ok: cuda_mla_decode_bench --topk=2048 (v32_bench.txt)"
  else
    fail "cuda_mla_decode_bench --topk=2048 (v32_bench.txt)"
  fi
fi
if have_time 30 "cuda_indexer_bench"; then
  echo "## cuda_indexer_bench" >>"${out}/v32_bench.txt"
  if timeout "$(limit 60)" "${build_rel}/bench/cuda_indexer_bench" --batches=1,16,64 \
       --contexts=8192,131072 --prefill_rows=512 --min_ms=10 >>"${out}/v32_bench.txt" 2>&1; then
    say "ok: cuda_indexer_bench (v32_bench.txt)"
  else
    fail "cuda_indexer_bench (v32_bench.txt)"
  fi
fi
if have_time 20 "cuda_indexer_bench --key_dtype=fp8"; then
  echo "## cuda_indexer_bench --key_dtype=fp8" >>"${out}/v32_bench.txt"
  if timeout "$(limit 40)" "${build_rel}/bench/cuda_indexer_bench" --key_dtype=fp8 \
       --batches=1,64 --contexts=131072 --prefill_rows=512 --min_ms=10 \
       >>"${out}/v32_bench.txt" 2>&1; then
    say "ok: cuda_indexer_bench --key_dtype=fp8 (v32_bench.txt)"
  else
    fail "cuda_indexer_bench --key_dtype=fp8 (v32_bench.txt)"
  fi
fi
# Hardware counters for the default tensor-core kernel and its ring variant on one large
# shape (16 heads, batch 64 x 32K): achieved DRAM throughput, pipe use, occupancy, stall
# reasons. A diagnosis, not a check: where ncu cannot read the counters the step says so
# and the verdict does not change.
if command -v ncu >/dev/null 2>&1 && ((deadline - SECONDS >= 60)); then
  for k in mma mma_ring; do
    echo "## ncu, --kernel=${k}"
    timeout "$(limit 45)" ncu --clock-control none --launch-skip 2 --launch-count 2 \
      --section SpeedOfLight --section Occupancy \
      --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis \
      --section WarpStateStats --section SchedulerStats \
      "${build_rel}/bench/cuda_mla_decode_bench" --kernel=${k} --batches=64 \
      --contexts=32768 --heads=16 --min_ms=1 --rotate=false 2>&1
    echo "rc $?"
  done >>"${out}/decode_bench_more.txt"
  say "note: ncu on the tensor-core split kernel and its ring variant (decode_bench_more.txt)"
fi

# --- 4. The whole model on the GPU --------------------------------------------------------
models=/tmp/mla-bench-models
model="${models}/v2-lite-2layer"
if ! have_time 90 "the bench model"; then
  :
elif timeout "$(limit 150)" tools/make_bench_models.sh "${models}" v2-lite-2layer \
       >/tmp/bench_model.log 2>&1; then
  say "ok: bench model ${model} ($(du -shL "${model}" | cut -f1))"
  engine=("${build_rel}/bench/mla_engine_bench" --device=cuda "--model_dir=${model}"
          --kv_cache_mib=16384 --max_batch_tokens=4096)
  {
    echo "## decode, prompt 512, 64 tokens each"
    timeout "$(limit 90)" "${engine[@]}" --mode=batch --batches=1,16,64 --prompt_len=512 \
      --decode_tokens=64
    echo "rc $?"
    # The MoE experts' two device paths at the same batches: the grouped kernel (the
    # default up to 512 token-expert pairs) against one cuBLASLt GEMM triple per expert.
    echo "## decode as above, CUDA graphs on (MLA_CUDA_GRAPHS=on)"
    MLA_CUDA_GRAPHS=on timeout "$(limit 90)" "${engine[@]}" --mode=batch \
      --batches=1,16,64 --prompt_len=512 --decode_tokens=64
    echo "rc $?"
    echo "## decode as above, experts one GEMM triple each (MLA_CUDA_GROUPED_EXPERTS=never)"
    MLA_CUDA_GROUPED_EXPERTS=never timeout "$(limit 90)" "${engine[@]}" --mode=batch \
      --batches=1,16,64 --prompt_len=512 --decode_tokens=64
    echo "rc $?"
    # Long contexts, where the decode kernel is a large share of a step: the default split
    # kernel against the ring variant and the CUDA-core one in the whole model.
    for k in auto mma_ring simt; do
      echo "## decode, prompt 16384, 32 tokens each, MLA_CUDA_DECODE_KERNEL=${k}"
      MLA_CUDA_DECODE_KERNEL=$([[ ${k} == auto ]] && echo "" || echo ${k}) \
        timeout "$(limit 90)" "${engine[@]}" --mode=batch --batches=1,16 --prompt_len=16384 \
        --decode_tokens=32
      echo "rc $?"
    done
    echo "## prefill, 4096-token prompt"
    timeout "$(limit 60)" "${engine[@]}" --mode=prefix --prompt_len=4096
    echo "rc $?"
    echo "## a new engine's first request against its second, 4096-token prompts"
    for w in false true; do
      timeout "$(limit 60)" "${engine[@]}" --mode=first --prompt_len=4096 --engine_warmup=${w}
      echo "rc $?"
    done
    echo "## tools/make_bench_models.sh"
    cat /tmp/bench_model.log
  } >"${out}/engine_bench.txt" 2>&1
  if grep -q '^rc [^0]' "${out}/engine_bench.txt"; then
    fail "mla_engine_bench --device=cuda (engine_bench.txt)"
  else
    say "ok: mla_engine_bench --device=cuda (engine_bench.txt)"
  fi
  grep -E '^## decode|^\| [0-9]+ \||^prefill|^\| (on|off) \|' "${out}/engine_bench.txt" | tee -a "${summary}"
else
  cp /tmp/bench_model.log "${out}/engine_bench.txt"
  fail "tools/make_bench_models.sh (engine_bench.txt)"
fi

# --- 5. The demo model's needles, GPU against CPU ------------------------------------------
recall="${out}/recall.txt"
: >"${recall}"
rm -rf /tmp/recall-cuda /tmp/recall-cuda-graphs /tmp/recall-cpu  # A warm machine's old runs.
# On the GPU, on the GPU with CUDA graphs on (off by default until this and the server
# test pass with them), and on the CPU.
for run in cuda cuda-graphs cpu; do
  device="${run%%-*}"
  graphs=off
  [[ "${run}" == cuda-graphs ]] && graphs=on
  have_time 40 "recall_check.sh ${run}" || continue
  echo "## mla-server --device=${device}, MLA_CUDA_GRAPHS=${graphs}" >>"${recall}"
  MLA_CUDA_GRAPHS=${graphs} SERVER_ARGS="--device=${device}" SERVER_THREADS=8 \
    timeout "$(limit 150)" tools/train_demo/recall_check.sh "${build_rel}" \
    models/needle-v2-demo "/tmp/recall-${run}" >>"${recall}" 2>&1
  echo "rc $?" >>"${recall}"
done
if grep -q '^rc [^0]' "${recall}"; then
  fail "recall_check.sh (recall.txt)"
elif [[ -f /tmp/recall-cpu/results.jsonl && -f /tmp/recall-cuda/results.jsonl ]]; then
  python3 - /tmp/recall-cpu/results.jsonl /tmp/recall-cuda/results.jsonl \
    /tmp/recall-cuda-graphs/results.jsonl >>"${recall}" <<'PY'
import json, os, sys
def load(path):
    rows = (json.loads(line) for line in open(path))
    return {(r["kind"], r["length"], r["asked_depth"], r["sample"]): r for r in rows}
def same(a, b):
    return sum(1 for k in a if k in b and a[k]["generated"] == b[k]["generated"])
hits = lambda d: sum(1 for r in d.values() if r["exact_match"])
cpu, gpu = load(sys.argv[1]), load(sys.argv[2])
if os.path.exists(sys.argv[3]):
    graphs = load(sys.argv[3])
    print(f"GPU with graphs vs without: {same(gpu, graphs)} of {len(gpu)} answers identical; "
          f"exact match {hits(graphs)}/{len(graphs)} with graphs")
print(f"GPU vs CPU: {same(cpu, gpu)} of {len(cpu)} answers identical; exact match "
      f"{hits(gpu)}/{len(gpu)} on the GPU, {hits(cpu)}/{len(cpu)} on the CPU")
PY
  say "ok: recall_check.sh on cuda, cuda with graphs and cpu (recall.txt)"
  tail -2 "${recall}" | tee -a "${summary}"
fi

if ((failed)); then
  say "verdict: FAILED"
  exit 1
fi
say "verdict: all passed"
