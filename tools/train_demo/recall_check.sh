#!/usr/bin/env bash
# Recall of a trained model measured the way a user measures it: mla-server serves the
# model directory, mla-recall sweeps it (the harness's own prompts, over gRPC), and the
# server stops afterwards. Prints the harness's table; OUT_DIR keeps results.jsonl,
# summary.json and heatmap.svg.
#
#   tools/train_demo/recall_check.sh BUILD_DIR MODEL_DIR OUT_DIR [mla-recall flags...]
#
# Default sweep: the demo model's goal, 1K / 2K / 4K tokens x 11 depths x passkey, kv and
# multi, 3 samples per cell, seed 0. Flags after OUT_DIR replace or add to those;
# SERVER_THREADS (default 2) sets the server's threads; SERVER_ARGS adds server flags
# (e.g. --kv_cache_dtype=fp8).
set -euo pipefail
build=${1:?usage: recall_check.sh BUILD_DIR MODEL_DIR OUT_DIR [mla-recall flags...]}
model=${2:?usage: recall_check.sh BUILD_DIR MODEL_DIR OUT_DIR [mla-recall flags...]}
out=${3:?usage: recall_check.sh BUILD_DIR MODEL_DIR OUT_DIR [mla-recall flags...]}
shift 3
cd "$(dirname "$0")/../.."
mkdir -p "$out"
rm -f "$out/port"  # a previous run's port would be read before the new one is written
"$build/server/mla-server" --model_dir="$model" --listen=127.0.0.1:0 \
  --port_file="$out/port" --metrics_address=127.0.0.1:0 --http_address= \
  --threads="${SERVER_THREADS:-2}" ${SERVER_ARGS:-} \
  >"$out/server.log" 2>&1 &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 150); do [ -s "$out/port" ] && break; sleep 0.2; done
[ -s "$out/port" ] || { echo "recall_check: the server did not start:" >&2; cat "$out/server.log" >&2; exit 1; }
"$build/client/mla-recall" --target="127.0.0.1:$(cat "$out/port")" --lengths=1K,2K,4K \
  --num_depths=11 --kinds=passkey,kv,multi --samples=3 --seed=0 --concurrency=2 --fresh \
  --progress=false --out="$out" "$@"
# Exact match by kind x length (mean over the depths' trials) and the lowest depth cell.
awk -F, 'NR > 1 { k = $3 "," $1; hit[k] += $4 * $5; n[k] += $4; err[k] += $7
                  if (!(k in low) || $5 < low[k]) low[k] = $5
                  if (!($1 in seen)) { seen[$1] = 1; lens[++nl] = $1 }
                  if (!($3 in seenk)) { seenk[$3] = 1; kinds[++nk] = $3 } }
  END { printf "%-8s", "kind"; for (i = 1; i <= nl; i++) printf " %16s", lens[i] " tok"
        printf "\n"
        for (j = 1; j <= nk; j++) { printf "%-8s", kinds[j]
          for (i = 1; i <= nl; i++) { k = kinds[j] "," lens[i]
            printf " %6.2f (min %.2f)", n[k] ? hit[k] / n[k] : 0, low[k]
            if (err[k]) printf " %d err", err[k] }
          printf "\n" }
        print "(exact match over all depths; min: the worst depth)" }' "$out/summary.csv"
