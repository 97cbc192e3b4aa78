#!/usr/bin/env python3
"""Retrieval of a saved needle model by length, depth and needle kind, in torch.

Loads the model directory with transformers (DeepSeek-V2 MLA models and the Llama full-cache
control alike; the bf16 weights as saved, computed in float32, eager attention) and scores
fixed seeded prompts built exactly as the recall harness builds them (data.build_prompt).
Per prompt, one forward pass over prompt + answer gives:
  - exact: greedy decoding yields the answer (every answer token is the argmax given the
    correct prefix);
  - logprob: the answer's log-probability;
  - margin: the smallest, over the answer tokens, of the correct token's logit minus the
    best other logit (> 0 exactly when retrieved);
  - attention sharpness of the last prompt position's query: entropy (nats) and largest
    weight, per layer, averaged over heads;
  - needle mass: the share of that query's attention on the answer's bytes where they
    stand in the prompt (the needle's digits, which a copying head must read), per layer,
    in its most attentive head and averaged over heads. Sharpness says how peaked the
    weights are; needle mass says whether they land on the needle;
  - distractor mass (`multi` prompts): the share of the same head's attention (the one
    with the prompt's largest needle mass) on the other kv needles' values, which a head
    that cannot tell the keys apart reads instead of the asked one.

  tools/reference/.venv/bin/python tools/train_demo/evaluate.py models/needle-v2-demo \\
      --lengths 1024,2048,4096 --depths 11 --json out.json --svg out.svg
"""

import argparse
import json
import os
import random
import re
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402
import heatmap_svg  # noqa: E402


def load(model_dir):
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                                 local_files_only=True,
                                                 attn_implementation="eager")
    return model.eval()


# A kv needle's sentence (data.kv_needle) with its value as group 1.
KV_NEEDLE = re.compile(rb"The value of key [A-Z]{4} is ([0-9]{4})\.")


@torch.no_grad()
def score(model, prompt, answer, sharpness=True):
    """exact, answer log-probability, margin, per-layer (entropy, max weight, needle mass
    in the best head, mean needle mass) and the distractor mass of the head with the
    largest needle mass (None without other kv needles in the prompt)."""
    target = data.encode(answer)
    ids = torch.tensor([prompt + target])
    out = model(ids[:, :-1], use_cache=False, output_attentions=sharpness)
    logits = out.logits[0, len(prompt) - 1:].float()
    correct = logits[torch.arange(len(target)), torch.tensor(target)]
    others = logits.clone()
    others[torch.arange(len(target)), torch.tensor(target)] = float("-inf")
    margin = float((correct - others.max(-1).values).min())
    logprob = float(torch.log_softmax(logits, -1)[torch.arange(len(target)),
                                                  torch.tensor(target)].sum())
    layers, distractor = [], None
    if sharpness:
        span = answer_positions(prompt, target)
        others = distractor_positions(prompt, target)
        best = -1.0
        for att in out.attentions:  # [1, heads, queries, keys]
            w = att[0, :, len(prompt) - 1, :len(prompt)].float()
            entropy = -(w * torch.log(w.clamp_min(1e-30))).sum(-1)
            mass = w[:, span].sum(-1) if span else torch.zeros(w.shape[0])
            layers.append((float(entropy.mean()), float(w.max(-1).values.mean()),
                           float(mass.max()), float(mass.mean())))
            head = int(mass.argmax())
            if others and float(mass[head]) > best:
                best, distractor = float(mass[head]), float(w[head, others].sum())
    return margin > 0, logprob, margin, layers, distractor


def answer_positions(prompt, target):
    """Every prompt position inside an occurrence of the answer's bytes (a passkey
    stands twice in its needle; a kv value once)."""
    n, found = len(target), set()
    for i in range(len(prompt) - n + 1):
        if prompt[i:i + n] == target:
            found.update(range(i, i + n))
    return sorted(found)


def distractor_positions(prompt, target):
    """Prompt positions of the values of the kv needles other than the asked one."""
    text = bytes(t if t < 256 else 0 for t in prompt)
    asked = bytes(target)
    return [i for m in KV_NEEDLE.finditer(text) if m.group(1) != asked
            for i in range(m.start(1), m.end(1))]


@torch.no_grad()
def greedy(model, prompt, steps):
    ids = torch.tensor([prompt])
    out = []
    for _ in range(steps):
        tok = int(model(ids, use_cache=False).logits[0, -1].argmax())
        out.append(tok)
        if tok == data.EOS_ID:
            break
        ids = torch.cat([ids, torch.tensor([[tok]])], dim=1)
    return out


def evaluate(model, sentences, lengths, depths, kinds, per_cell, seed, log=print):
    """{"cells": [{length, depth, kind, exact, logprob, margin, needle_mass
    [, distractor_mass]}],
    "sharpness": ...}."""
    cells, sharp, t0 = [], {}, time.time()
    for length in lengths:
        per_layer = []
        for kind in kinds:
            rng = random.Random(f"{seed}-{length}-{kind}")
            for depth in depths:
                for _ in range(per_cell):
                    prompt, answer = data.build_prompt(sentences, length, kind, depth, rng)
                    exact, logprob, margin, layers, distractor = score(model, prompt,
                                                                       answer)
                    # The prompt's needle mass: its most attentive head in any layer.
                    cell = {"length": length, "depth": depth, "kind": kind,
                            "exact": bool(exact), "logprob": logprob, "margin": margin,
                            "needle_mass": max(layer[2] for layer in layers)}
                    if distractor is not None:
                        cell["distractor_mass"] = distractor
                    cells.append(cell)
                    per_layer.append(layers)
        sharp[length] = [
            {"entropy": mean(p[i][0] for p in per_layer),
             "max_weight": mean(p[i][1] for p in per_layer),
             "needle_mass_best_head": mean(p[i][2] for p in per_layer),
             "needle_mass_mean": mean(p[i][3] for p in per_layer)}
            for i in range(len(per_layer[0]))]
        row = [c for c in cells if c["length"] == length]
        log(f"len {length:5d}: " + "  ".join(
            f"{k} {mean(c['exact'] for c in row if c['kind'] == k):.2f}" for k in kinds) +
            f"  logprob {mean(c['logprob'] for c in row):.2f}  ({time.time() - t0:.0f} s)")
    return {"cells": cells, "sharpness": sharp}


def mean(values):
    values = list(values)
    return sum(values) / max(1, len(values))


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("--haystack", default="data/haystack/haystack.txt")
    ap.add_argument("--lengths", default="256,512,1024,2048,4096")
    ap.add_argument("--depths", type=int, default=11, help="evenly spaced depths 0.0 .. 1.0")
    ap.add_argument("--kinds", default=",".join(data.KINDS))
    ap.add_argument("--per-cell", type=int, default=1,
                    help="prompts per (length, depth, kind) cell")
    ap.add_argument("--seed", type=int, default=12345)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="write every cell, the sharpness table and a summary here")
    ap.add_argument("--svg", help="write a length x depth heatmap of the exact rate here")
    ap.add_argument("--dump-prompt", metavar="FILE",
                    help="write one passkey prompt of the first length as comma-separated ids "
                         "(for mla-client generate --prompt_ids) and print torch's greedy ids")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load(args.model_dir)
    sentences = data.load_sentences(args.haystack)
    lengths = [int(x) for x in args.lengths.split(",")]
    if args.dump_prompt:
        prompt, answer = data.build_prompt(sentences, lengths[0], "passkey", 0.5,
                                           random.Random(args.seed))
        with open(args.dump_prompt, "w") as f:
            f.write(",".join(map(str, prompt)) + "\n")
        out = greedy(model, prompt, 8)
        print(f"prompt {len(prompt)} tokens, answer {answer!r}; torch greedy ids {out} = "
              f"{data.decode(out)!r}")
        return
    depths = [i / max(1, args.depths - 1) for i in range(args.depths)]
    kinds = args.kinds.split(",")
    result = evaluate(model, sentences, lengths, depths, kinds, args.per_cell, args.seed)
    result["summary"] = {
        str(length): {k: mean(c["exact"] for c in result["cells"]
                              if c["length"] == length and c["kind"] == k) for k in kinds}
        for length in lengths}
    result["settings"] = {"model": os.path.basename(os.path.normpath(args.model_dir)),
                          "per_cell": args.per_cell, "seed": args.seed, "depths": depths}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    if args.svg:
        heatmap_svg.write(args.svg, result["cells"], lengths, depths,
                          f"{result['settings']['model']}: exact match (mean over "
                          f"{', '.join(kinds)})")


if __name__ == "__main__":
    main(sys.argv[1:])
