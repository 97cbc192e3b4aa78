#!/usr/bin/env python3
"""Markdown report of a rank sweep (tools/train_demo/rank_sweep.sh): per model the cache
bytes per token, parameters, training steps, exact-match rate by length and kind, answer
log-probabilities and margins, and attention sharpness by context length.

  tools/reference/.venv/bin/python tools/train_demo/sweep_report.py build/rank-sweep
"""

import json
import os
import re
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train import cache_bytes_per_token  # noqa: E402


def load_models(root):
    models = []
    for name in sorted(os.listdir(root), key=sort_key):
        d = os.path.join(root, name)
        if not os.path.isfile(os.path.join(d, "eval.json")):
            continue
        with open(os.path.join(d, "model", "config.json")) as f:
            cfg = json.load(f)
        with open(os.path.join(d, "eval.json")) as f:
            ev = json.load(f)
        log = open(os.path.join(d, "train.log")).read() if os.path.exists(
            os.path.join(d, "train.log")) else ""
        params = re.search(r"params ([0-9,]+)", log)
        done = re.search(r"done: (\d+) steps, (?:([0-9.]+) M tokens, )?([0-9.]+) min", log)
        # Where the copy circuit formed: the opening phase's end (its last logged step).
        opening = re.search(r"opening phase ends at step (\d+)", log)
        models.append({"name": name, "cfg": cfg, "eval": ev,
                       "opening": opening.group(1) if opening else "?",
                       "params": params.group(1) if params else "?",
                       "steps": done.group(1) if done else "?",
                       "tokens": done.group(2) or "?" if done else "?",
                       "minutes": done.group(3) if done else "?"})
    return models


def sort_key(name):
    m = re.search(r"r(\d+)$", name)
    return (0, int(m.group(1))) if m else (1, 0)


def cells(model, **where):
    return [c for c in model["eval"]["cells"] if all(c[k] == v for k, v in where.items())]


def main(argv):
    root = argv[0]
    models = load_models(root)
    if not models:
        sys.exit(f"error: no evaluated model under {root}")
    lengths = sorted({c["length"] for m in models for c in m["eval"]["cells"]})
    kinds = list(dict.fromkeys(c["kind"] for c in models[0]["eval"]["cells"]))
    depths = models[0]["eval"]["settings"]["depths"]
    per_cell = models[0]["eval"]["settings"]["per_cell"]
    print(f"Exact-match rate, mean over {len(depths)} depths x {len(kinds)} kinds "
          f"({', '.join(kinds)}) x {per_cell} prompt(s) = {len(depths) * len(kinds) * per_cell} "
          f"prompts per length:\n")
    # The control's parameters against each model's (the budget is to match within 10%).
    control = next((m for m in models if m["cfg"].get("model_type") != "deepseek_v2"), None)

    def vs_control(m):
        if control is None or m is control or "?" in (m["params"], control["params"]):
            return ""
        ratio = int(control["params"].replace(",", "")) / int(m["params"].replace(",", ""))
        return f" ({ratio - 1:+.0%})"

    print("| model | cache B/token | params (control vs it) | opening ended (step) | steps | "
          "M tokens (min) | " + " | ".join(str(n) for n in lengths) + " |")
    print("|---|---:|---:|---:|---:|---:|" + "---:|" * len(lengths))
    for m in models:
        rates = [statistics.mean(c["exact"] for c in cells(m, length=n)) for n in lengths]
        print(f"| {m['name']} | {cache_bytes_per_token(m['cfg'])} | {m['params']}{vs_control(m)} | "
              f"{m['opening']} | {m['steps']} | {m['tokens']} ({m['minutes']}) | "
              + " | ".join(f"{r:.2f}" for r in rates) + " |")
    print("\nBy kind (passkey / kv / multi):\n")
    print("| model | " + " | ".join(str(n) for n in lengths) + " |")
    print("|---|" + "---|" * len(lengths))
    for m in models:
        row = []
        for n in lengths:
            row.append(" / ".join(
                f"{statistics.mean(c['exact'] for c in cells(m, length=n, kind=k)):.2f}"
                for k in kinds))
        print(f"| {m['name']} | " + " | ".join(row) + " |")
    print("\nAnswer log-probability (mean) and margin (median of the correct logit minus the "
          "best other, smallest over the answer tokens; > 0 = retrieved):\n")
    print("| model | " + " | ".join(str(n) for n in lengths) + " |")
    print("|---|" + "---|" * len(lengths))
    for m in models:
        row = []
        for n in lengths:
            cs = cells(m, length=n)
            row.append(f"{statistics.mean(c['logprob'] for c in cs):.2f} / "
                       f"{statistics.median(c['margin'] for c in cs):+.2f}")
        print(f"| {m['name']} | " + " | ".join(row) + " |")
    print("\nAttention sharpness of the last prompt position (the query that must find the "
          "needle), per layer: entropy in nats / largest weight, mean over heads and "
          "prompts:\n")
    layer_table(models, lengths, "entropy", "max_weight")
    # Evaluations before needle mass was recorded lack it.
    with_mass = [m for m in models
                 if "needle_mass_best_head" in m["eval"]["sharpness"][str(lengths[0])][0]]
    if with_mass:
        print("\nNeedle mass of the same query, per layer: the share of its attention on the "
              "answer's bytes in the prompt, in the most attentive head / mean over heads, "
              "mean over prompts:\n")
        layer_table(with_mass, lengths, "needle_mass_best_head", "needle_mass_mean")


def layer_table(models, lengths, first, second):
    """A model x layer table of two per-layer sharpness values by length."""
    print("| model | layer | " + " | ".join(str(n) for n in lengths) + " |")
    print("|---|---|" + "---|" * len(lengths))
    for m in models:
        sharp = m["eval"]["sharpness"]
        for layer in range(len(sharp[str(lengths[0])])):
            row = [f"{sharp[str(n)][layer][first]:.2f} / {sharp[str(n)][layer][second]:.2f}"
                   if str(n) in sharp else "—" for n in lengths]
            print(f"| {m['name']} | {layer} | " + " | ".join(row) + " |")

if __name__ == "__main__":
    main(sys.argv[1:])
