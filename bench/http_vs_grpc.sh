#!/usr/bin/env bash
# The cost of the OpenAI-compatible HTTP front end against gRPC, in one run: one
# mla-server serving both, mla-bench sending the same load over each in turn (gRPC, HTTP,
# gRPC, HTTP, ... for ROUNDS rounds per concurrency), then per concurrency the medians of
# output tokens/s, mean time per output token, and the server's CPU time per generated
# token (from /proc/PID/stat, so other processes on a shared machine do not count), with
# the ratio HTTP ÷ gRPC. Both sides ask for the token's own logprob (HTTP counts tokens
# from it, see client/bench/openai_generate.h).
#
#   bench/http_vs_grpc.sh BUILD_DIR [MODEL_DIR=models/needle-v2-demo] [ROUNDS=3] \
#     [CONCURRENCIES=1,16] [more mla-bench flags]
set -euo pipefail
build="$1"; model="${2:-models/needle-v2-demo}"; rounds="${3:-3}"; concurrencies="${4:-1,16}"
shift $(( $# < 4 ? $# : 4 ))
out="$(mktemp -d)"
"$build/server/mla-server" --model_dir="$model" --device=cpu --threads=2 --kv_cache_mib=64 \
  --metrics_address= --listen=127.0.0.1:0 --port_file="$out/grpc" \
  --http_address=127.0.0.1:0 --http_port_file="$out/http" > "$out/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$out"' EXIT
for _ in $(seq 1 600); do [ -s "$out/grpc" ] && break; sleep 0.05; done
grpc="127.0.0.1:$(cat "$out/grpc")"; http="127.0.0.1:$(cat "$out/http")"
cpu_ticks() { awk '{print $14 + $15}' "/proc/$server/stat"; }
echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for c in ${concurrencies//,/ }; do
  n=$(( c == 1 ? 40 : 200 ))
  for r in $(seq 1 "$rounds"); do
    for api in grpc http; do
      flags=(--target="$grpc" --logprobs=1 --concurrency="$c" --num_requests="$n"
             --prompt_len=64 --output_len=128 --warmup_requests=4 --seed="$r" --progress=false)
      [ "$api" = http ] && flags+=(--http_target="$http")
      before=$(cpu_ticks)
      "$build/client/mla-bench" "${flags[@]}" "$@" --json="$out/$c.$api.$r.json" > /dev/null
      echo "$(( $(cpu_ticks) - before ))" > "$out/$c.$api.$r.ticks"
      echo "concurrency $c round $r/$rounds: $api (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    done
  done
done
python3 - "$out" "$rounds" "$concurrencies" "$(getconf CLK_TCK)" <<'PY'
import json, statistics, sys
out, rounds, concurrencies, hz = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(","), int(sys.argv[4])
print(f"{'conc':>4} {'api':>5} {'out tok/s':>10} {'TPOT ms':>8} {'failed':>6} {'server CPU us/tok':>18}")
for c in concurrencies:
    med = {}
    for api in ("grpc", "http"):
        rows = []
        for r in range(1, rounds + 1):
            j = json.load(open(f"{out}/{c}.{api}.{r}.json"))
            ticks = int(open(f"{out}/{c}.{api}.{r}.ticks").read())
            # Warmup tokens (4 requests) are in the CPU time too; counted alike on both sides.
            tokens = j["output_tokens"] + 4 * 128
            rows.append((j["output_token_throughput"], j["tpot_ms"]["mean"], j["failed"],
                         1e6 * ticks / hz / tokens))
        med[api] = [statistics.median(x) for x in zip(*rows)]
        m = med[api]
        print(f"{c:>4} {api:>5} {m[0]:>10.0f} {m[1]:>8.3f} {m[2]:>6.0f} {m[3]:>18.1f}")
    g, h = med["grpc"], med["http"]
    print(f"{c:>4} ratio HTTP/gRPC: tok/s {h[0]/g[0]:.2f}, TPOT {h[1]/g[1]:.2f}, "
          f"server CPU per token {h[3]/g[3]:.2f}")
PY
