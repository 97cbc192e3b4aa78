#!/usr/bin/env bash
# The rank question: trains MLA models with kv_lora_rank 8/16/32/64/128 and the full-cache
# control (plain multi-head attention) with one recipe and one budget, evaluates them all
# with the same prompts, and writes a report.
#
#   tools/train_demo/rank_sweep.sh [OUT_DIR] [TOKENS_PER_MODEL] [MAX_LEN]
#
# The budget is training tokens, not wall time, so every model gets the same training
# whatever the machine's load, and a rerun repeats the sweep. It counts from the end of
# the opening phase (train.py --tokens-after-opening): the copy circuit forms after an
# erratic number of steps (10,000 to 72,000 seen), and a model whose circuit formed late
# must not get fewer needle rows for it; the opening runs until the circuit forms, at most
# as many tokens again. Default 24 M needle-phase tokens (the shipped demo model saw 27 M
# in its 51 needle minutes). Two models train at a time, one thread each (a 2-core machine:
# 1.5 to 2.5 hours a pair), the most telling pair first; each pair is evaluated and the
# report refreshed as soon as it is trained; a rerun resumes each model from its checkpoint
# and skips finished steps. MODELS="mla-r128 mla-r64" trains and evaluates only those
# (in that order, two at a time), e.g. to finish a sweep whose other models are done
# elsewhere. Per model OUT_DIR/NAME/ holds the
# model, train.log, eval.json and recall.svg; OUT_DIR/report.md gathers the tables.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-build/rank-sweep}
tokens=${2:-24e6}
max_len=${3:-5120}
# 7680: the longest prompt whose answer still fits the models' 8,192 positions.
eval_lengths=${EVAL_LENGTHS:-512,1024,2048,4096,7680}
py=${PY:-tools/reference/.venv/bin/python}
seed=${SEED:-1}
mkdir -p "$out"

# In pairs: the control beside the lowest rank first, then the rest from the ends inwards.
configs=("mha --attention mha" "mla-r8 --kv-lora-rank 8" "mla-r32 --kv-lora-rank 32"
         "mla-r128 --kv-lora-rank 128" "mla-r16 --kv-lora-rank 16" "mla-r64 --kv-lora-rank 64")
if [[ -n "${MODELS:-}" ]]; then
  chosen=()
  for name in $MODELS; do
    found=""
    for config in "${configs[@]}"; do
      if [[ "${config%% *}" == "$name" ]]; then
        chosen+=("$config")
        found=1
      fi
    done
    if [[ -z "$found" ]]; then
      echo "rank_sweep.sh: MODELS names '$name', which is not one of:" \
        "mha mla-r8 mla-r32 mla-r128 mla-r16 mla-r64" >&2
      exit 2
    fi
  done
  configs=("${chosen[@]}")
fi

train_one() {
  local name=$1
  shift
  local dir="$out/$name"
  mkdir -p "$dir"
  if [[ -f "$dir/model/model.safetensors" ]]; then
    echo "$name: trained already"
    return
  fi
  echo "$name: training ($tokens tokens after the opening phase, log $dir/train.log)"
  "$py" tools/train_demo/train.py "$@" --out "$dir/model" --ckpt "$dir/state.pt" \
    --tokens "$tokens" --tokens-after-opening --induction-max 1.0 --max-minutes 0 \
    --max-len "$max_len" --threads 1 --seed "$seed" \
    --log-every 50 >> "$dir/train.log" 2>&1
  tail -n 1 "$dir/train.log"
}

eval_one() {
  local name=$1 dir="$out/$1"
  if [[ -f "$dir/eval.json" ]]; then
    echo "$name: evaluated already"
    return
  fi
  echo "$name: evaluating at $eval_lengths"
  "$py" tools/train_demo/evaluate.py "$dir/model" --lengths "$eval_lengths" --per-cell 3 \
    --threads 1 \
    --json "$dir/eval.json.tmp" --svg "$dir/recall.svg" > "$dir/eval.log" 2>&1
  mv "$dir/eval.json.tmp" "$dir/eval.json"
  grep '^len' "$dir/eval.log" | sed "s/^/  $name /"
}

# Trains a pair, then evaluates it and refreshes the report, so that a sweep spread over
# several sessions has results for every pair it has finished.
run_pairs() {
  local i step
  for ((i = 0; i < ${#configs[@]}; i += 2)); do
    for step in train_one eval_one; do
      # shellcheck disable=SC2086
      $step ${configs[i]} &
      if ((i + 1 < ${#configs[@]})); then
        # shellcheck disable=SC2086
        $step ${configs[i + 1]} &
      fi
      wait
    done
    "$py" tools/train_demo/sweep_report.py "$out" > "$out/report.md"
    echo "report so far: $out/report.md"
  done
}

run_pairs
echo "report: $out/report.md"
