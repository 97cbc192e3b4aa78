#!/usr/bin/env python3
"""Retrieval accuracy of a saved needle model, by prompt length and needle kind.

Loads the model directory with transformers' DeepseekV2ForCausalLM (the bf16 weights as
saved, computed in float32, eager attention) and scores fixed seeded prompts in the shared
format. A prompt counts as retrieved when greedy decoding yields exactly the answer; that is
checked in one forward pass over prompt + answer (greedy output equals the answer exactly
when every answer token is the argmax given the correct prefix).

  tools/reference/.venv/bin/python tools/train_demo/evaluate.py models/needle-v2-demo
"""

import argparse
import json
import os
import random
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402


def load(model_dir):
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                                 local_files_only=True,
                                                 attn_implementation="eager")
    return model.eval()


@torch.no_grad()
def retrieved(model, prompt, answer):
    target = data.encode(answer)
    ids = torch.tensor([prompt + target])
    logits = model(ids[:, :-1], use_cache=False).logits[0]
    picks = logits[len(prompt) - 1:].argmax(-1).tolist()
    return picks == target


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


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("--haystack", default="data/haystack/haystack.txt")
    ap.add_argument("--lengths", default="128,256,512,1024,2048")
    ap.add_argument("--per-kind", type=int, default=20, help="prompts per kind and length")
    ap.add_argument("--seed", type=int, default=12345)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="also write the table here")
    ap.add_argument("--dump-prompt", metavar="FILE",
                    help="write one passkey prompt of the first length as comma-separated ids "
                         "(for mla-client generate --prompt_ids) and print torch's greedy ids")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load(args.model_dir)
    sentences = data.load_sentences(args.haystack)
    if args.dump_prompt:
        length = int(args.lengths.split(",")[0])
        prompt, answer = data.build_prompt(sentences, length, "passkey", 0.5,
                                           random.Random(args.seed))
        with open(args.dump_prompt, "w") as f:
            f.write(",".join(map(str, prompt)) + "\n")
        out = greedy(model, prompt, 8)
        print(f"prompt {len(prompt)} tokens, answer {answer!r}; torch greedy ids {out} = "
              f"{data.decode(out)!r}")
        return
    table, t0 = {}, time.time()
    for length in [int(x) for x in args.lengths.split(",")]:
        row = {}
        for kind in data.KINDS:
            rng = random.Random(f"{args.seed}-{length}-{kind}")
            hits = 0
            for i in range(args.per_kind):
                depth = i / max(1, args.per_kind - 1)  # depths evenly from 0.0 to 1.0
                prompt, answer = data.build_prompt(sentences, length, kind, depth, rng)
                hits += retrieved(model, prompt, answer)
            row[kind] = hits / args.per_kind
        table[length] = row
        print(f"len {length:5d}: " + "  ".join(f"{k} {v:.2f}" for k, v in row.items()) +
              f"  ({time.time() - t0:.0f} s)", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"per_kind": args.per_kind, "seed": args.seed, "accuracy": table}, f,
                      indent=2)


if __name__ == "__main__":
    main(sys.argv[1:])
