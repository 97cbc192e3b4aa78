#!/usr/bin/env python3
"""Does the copy (induction) circuit form? A pilot for train.py's model on copy rows alone.

Each row is BOS, a string of random letters and digits, a newline and the same string
again; the loss is on the repeat only (chance: ln 62 = 4.13 nats per byte, a working
copy circuit: near 0). Row lengths are drawn per batch between --min-len and --max-len:
with both equal the copy always starts the same distance back, which a position-only
attention head solves without copying. Prints the mean loss every 25 steps.

  tools/reference/.venv/bin/python tools/train_demo/copy_pilot.py --min-len 128 --max-len 256
"""

import argparse
import os
import random
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402
import train  # noqa: E402


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--min-len", type=int, default=128)
    ap.add_argument("--max-len", type=int, default=256)
    ap.add_argument("--batch-tokens", type=int, default=8192)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--lm-frac", type=float, default=0.0,
                    help="fraction of rows that are haystack text, trained on every byte "
                         "(the printed loss stays the copy rows')")
    ap.add_argument("--haystack", default="data/haystack/haystack.txt")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--minutes", type=float, default=7.0)
    return ap.parse_args(argv)


def batch(a, rng, sentences):
    length = rng.randint(a.min_len, a.max_len)
    half = (length - 2) // 2
    width = 2 * half + 2
    rows, masks, text_rows = [], [], []
    for _ in range(max(1, a.batch_tokens // length)):
        if rng.random() < a.lm_frac:
            i, text = rng.randrange(len(sentences)), ""
            while len(text) < width:
                text += sentences[i % len(sentences)] + " "
                i += 1
            rows.append([data.BOS_ID] + data.encode(text)[:width - 1])
            masks.append([True] * (width - 1))
            text_rows.append(True)
        else:
            ids, start = data.copy_example(None, length, rng, random_only=True)
            rows.append(ids)
            masks.append([False] * (start - 1) + [True] * half)  # label j predicts byte j + 1
            text_rows.append(False)
    return torch.tensor(rows), torch.tensor(masks), torch.tensor(text_rows)


def main(argv):
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    cfg = train.model_config(train.parse_args(
        ["--hidden", str(a.hidden), "--layers", str(a.layers), "--heads", str(a.heads),
         "--intermediate", str(2 * a.hidden)]))
    model = train.build_model(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=0.01)
    rng = random.Random(a.seed)
    sentences = data.load_sentences(a.haystack) if a.lm_frac > 0 else []
    t0, step, total = time.time(), 0, 0.0
    while time.time() - t0 < 60 * a.minutes:
        ids, mask, text = batch(a, rng, sentences)
        for g in opt.param_groups:
            g["lr"] = a.lr * min(1.0, (step + 1) / 30)
        logits = model(ids[:, :-1], use_cache=False).logits
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1),
                             reduction="none").view(mask.shape)
        copy = ce[mask & ~text[:, None]].mean()  # what is printed
        loss = copy + (ce[mask & text[:, None]].mean() if text.any() else 0.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        total += float(copy.detach())
        if step % 25 == 0:
            print(f"step {step} loss {total / 25:.3f} tokens {step * ids.numel()} "
                  f"t {time.time() - t0:.0f}s", flush=True)
            total = 0.0


if __name__ == "__main__":
    main(sys.argv[1:])
