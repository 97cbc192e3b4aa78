#!/usr/bin/env bash
# Before/after comparison of two mla_model_bench binaries in one run: interleaves them for
# ROUNDS rounds on the same checkpoint and prints, per context, the best prefill and decode
# tokens/s of each and the ratio after ÷ before (machines are shared: only same-run ratios
# mean anything; best-of-rounds drops the rounds another process disturbed).
#
#   bench/ab_model_bench.sh BEFORE_BIN AFTER_BIN MODEL_DIR [ROUNDS=2] [CONTEXTS=512,4096] \
#     [more mla_model_bench flags, e.g. --decode_tokens=64]
set -euo pipefail
before="$1"; after="$2"; model="$3"; rounds="${4:-2}"; contexts="${5:-512,4096}"
shift $(( $# < 5 ? $# : 5 ))
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
for r in $(seq 1 "$rounds"); do
  for side in before after; do
    bin="$before"; [ "$side" = after ] && bin="$after"
    echo "round $r/$rounds: $side (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    "$bin" --model_dir="$model" --contexts="$contexts" --threads=2 --roofline=false \
      --json="$out/$side.$r.json" "$@" > /dev/null 2>&1
  done
done
python3 - "$out" "$rounds" <<'PY'
import json, sys
out, rounds = sys.argv[1], int(sys.argv[2])
best = {}
for side in ("before", "after"):
    for r in range(1, rounds + 1):
        for row in json.load(open(f"{out}/{side}.{r}.json"))["results"]:
            for key in ("prefill_tok_s", "decode_tok_s"):
                k = (side, row["context"], key)
                best[k] = max(best.get(k, 0.0), row[key])
contexts = sorted({c for (_, c, _) in best})
print(f"{'figure':<22} {'before':>10} {'after':>10} {'after/before':>13}")
for c in contexts:
    for key, name in (("prefill_tok_s", "prefill tok/s"), ("decode_tok_s", "decode tok/s")):
        b, a = best[("before", c, key)], best[("after", c, key)]
        if b == 0 and a == 0:
            continue  # Not measured (--fill_cache skips prefill, --decode_tokens=0 decode).
        print(f"{name + ' @' + str(c):<22} {b:>10.2f} {a:>10.2f} {a / b if b else 0:>13.3f}")
PY
