#!/usr/bin/env bash
# Greedy answer of the engine (mla-server + mla-client) for one passkey prompt, next to
# torch's greedy answer for the same token ids (tools/train_demo/evaluate.py --dump-prompt).
#   tools/train_demo/engine_check.sh BUILD_DIR [MODEL_DIR] [LENGTH]
set -euo pipefail
build=${1:?usage: engine_check.sh BUILD_DIR [MODEL_DIR] [LENGTH]}
model=${2:-models/needle-v2-demo}
length=${3:-512}
py=${MLA_REF_VENV:-tools/reference/.venv}/bin/python
tmp=$(mktemp -d)
trap 'kill "${server_pid:-}" 2>/dev/null || true; rm -rf "$tmp"' EXIT

"$py" tools/train_demo/evaluate.py "$model" --lengths "$length" --dump-prompt "$tmp/prompt.txt"
"$build/server/mla-server" --model_dir="$model" --listen=127.0.0.1:0 --port_file="$tmp/port" \
  --metrics_address=127.0.0.1:0 --threads=2 >"$tmp/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do [ -s "$tmp/port" ] && break; sleep 0.2; done
[ -s "$tmp/port" ] || { cat "$tmp/server.log"; exit 1; }
echo "engine:"
"$build/client/mla-client" generate --target="127.0.0.1:$(cat "$tmp/port")" \
  --prompt_ids="$(cat "$tmp/prompt.txt")" --max_tokens=8 --temperature=0 --print_ids
