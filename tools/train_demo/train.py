#!/usr/bin/env python3
"""Trains a small DeepSeek-V2 (MLA) byte-level model to retrieve needles from a haystack.

Uses transformers' own DeepseekV2ForCausalLM, so the saved checkpoint has exactly the tensor
names and semantics the engine loads. Runs on the CPU. Progress goes to stdout; a resumable
checkpoint (model + optimizer + data RNG) is written every --ckpt-every steps, and the final
model directory gets config.json, generation_config.json, model.safetensors (bf16) and the
byte-level tokenizer files.

  tools/reference/.venv/bin/python tools/train_demo/train.py --out models/needle-v2-demo
"""

import argparse
import json
import math
import os
import random
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402
import tokenizer_files  # noqa: E402


def model_config(a):
    if a.attention == "mha":
        return mha_config(a)
    return {
        "architectures": ["DeepseekV2ForCausalLM"], "model_type": "deepseek_v2",
        "hidden_size": a.hidden, "num_hidden_layers": a.layers,
        "num_attention_heads": a.heads, "num_key_value_heads": a.heads,
        "q_lora_rank": None, "kv_lora_rank": a.kv_lora_rank,
        "qk_nope_head_dim": a.nope_dim, "qk_rope_head_dim": a.rope_dim, "v_head_dim": a.v_dim,
        "intermediate_size": a.intermediate,
        # Dense MLP in every layer: first_k_dense_replace covers all layers, no experts.
        "moe_intermediate_size": a.intermediate, "n_routed_experts": 0, "n_shared_experts": 0,
        "num_experts_per_tok": 0, "first_k_dense_replace": a.layers, "moe_layer_freq": 1,
        "routed_scaling_factor": 1.0, "topk_method": "greedy", "n_group": 1, "topk_group": 1,
        "norm_topk_prob": False, "scoring_func": "softmax", "hidden_act": "silu",
        "vocab_size": a.vocab, "max_position_embeddings": a.max_positions,
        "rope_theta": a.rope_theta, "rope_scaling": None, "rms_norm_eps": 1e-6,
        "attention_bias": False, "attention_dropout": 0.0, "tie_word_embeddings": False,
        "bos_token_id": data.BOS_ID, "eos_token_id": data.EOS_ID, "pad_token_id": data.PAD_ID,
        "initializer_range": 0.02, "use_cache": True, "torch_dtype": "bfloat16",
    }


def mha_config(a):
    """The full-cache control of the rank sweep: a Llama-architecture model with plain
    multi-head attention (per head a K and V of nope + rope dims, RoPE on all of K), and
    otherwise the MLA model's shapes; about 9% more parameters at the default sizes."""
    head = a.nope_dim + a.rope_dim
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": a.hidden, "num_hidden_layers": a.layers,
        "num_attention_heads": a.heads, "num_key_value_heads": a.heads, "head_dim": head,
        "intermediate_size": a.intermediate, "hidden_act": "silu",
        "vocab_size": a.vocab, "max_position_embeddings": a.max_positions,
        "rope_parameters": {"rope_type": "default", "rope_theta": a.rope_theta},
        "rms_norm_eps": 1e-6, "attention_bias": False, "mlp_bias": False,
        "attention_dropout": 0.0, "tie_word_embeddings": False,
        "bos_token_id": data.BOS_ID, "eos_token_id": data.EOS_ID, "pad_token_id": data.PAD_ID,
        "initializer_range": 0.02, "use_cache": True, "torch_dtype": "bfloat16",
    }


def cache_bytes_per_token(cfg):
    """bf16 KV-cache bytes per token over all layers: the latent and the RoPE key for MLA,
    K and V of every head for the control."""
    if cfg["model_type"] == "llama":
        per_layer = 2 * cfg["num_key_value_heads"] * cfg["head_dim"]
    else:
        per_layer = cfg["kv_lora_rank"] + cfg["qk_rope_head_dim"]
    return 2 * per_layer * cfg["num_hidden_layers"]


def build_model(cfg_dict, attn="sdpa"):
    import tempfile
    from transformers import AutoConfig, AutoModelForCausalLM
    # Round-trip through config.json so training sees exactly what the engine will read.
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg_dict, f)
        cfg = AutoConfig.from_pretrained(d, local_files_only=True)
    return AutoModelForCausalLM.from_config(cfg, attn_implementation=attn, dtype=torch.float32)


def progress(a, step, elapsed, seen=0):
    """Fraction of the run done: by steps (--steps), by training tokens seen (--tokens) or
    by wall time (--max-minutes), whichever is furthest; a budget of 0 is no limit."""
    done = [step / a.steps if a.steps > 0 else 0.0,
            seen / a.tokens_total if a.tokens > 0 else 0.0,
            elapsed / (60 * a.max_minutes) if a.max_minutes > 0 else 0.0]
    return min(1.0, max(done))


def after_opening(a, p):
    """Fraction done of what follows the opening phase (which ended at progress
    a.phase_end): the length curriculum and the learning-rate decay run on it."""
    return max(0.0, p - a.phase_end) / (1.0 - a.phase_end) if a.phase_end < 1.0 else 1.0


def length_range(a, p, grown):
    """Curriculum: the longest training length is the larger of `grown` (raised by the
    training loop as the model succeeds, see --grow-acc) and a schedule that reaches
    --max-len after the --ramp fraction of what follows the opening phase; rows are drawn
    between that maximum / --len-span (at least --min-len) and the maximum, so training
    follows the frontier."""
    frac = min(1.0, after_opening(a, p) / a.ramp)
    hi = max(grown, int(a.min_len * (a.max_len / a.min_len) ** frac))
    hi = min(a.max_len, hi)
    return max(a.min_len, hi // a.len_span), hi


COPY, DENSE, PROMPT = range(3)  # row kinds


def make_batch(a, sentences, rng, p, grown, inducing=False):
    """A batch of rows of one length budget: with probability --copy-frac a copy row (a
    segment and its repeat, see data.copy_example), else with probability --multi-frac a
    dense row of several needles and questions (data.multi_question_example), else a prompt
    in the evaluation format and its answer."""
    if inducing:
        return induction_batch(a, rng)
    lo, hi = length_range(a, p, grown)
    # Log-uniform between lo and hi.
    length = int(math.exp(rng.uniform(math.log(lo), math.log(hi)))) if hi > lo else lo
    n = max(1, a.batch_tokens // length)
    rows = []  # (ids, [(first, end) target spans], kind: COPY, DENSE or PROMPT)
    for _ in range(n):
        u = rng.random()
        if u < a.copy_frac:
            rows.append(copy_row(*data.copy_example(sentences, length, rng)))
        elif u < a.copy_frac + a.multi_frac:
            rows.append((*data.multi_question_example(sentences, length, rng), DENSE))
        else:
            rows.append((*data.training_example(sentences, length, rng), PROMPT))
    return (*to_tensors(rows), length)


def copy_row(ids, start):
    """A copy row (see data.copy_example): the target is the repeat but its first byte,
    which nothing before it predicts."""
    return ids, [(start + 1, len(ids))], COPY


def to_tensors(rows):
    """(ids, answer_mask, copy_mask, lm_mask, is_prompt) of rows (ids, [(first, end) target
    spans], kind), padded to the longest row; masks are on label positions."""
    n = len(rows)
    width = max(len(r[0]) for r in rows)
    ids = torch.full((n, width), data.PAD_ID, dtype=torch.long)
    answer_mask = torch.zeros((n, width), dtype=torch.bool)  # on label positions
    copy_mask = torch.zeros((n, width), dtype=torch.bool)
    lm_mask = torch.zeros((n, width), dtype=torch.bool)
    for r, (s, spans, kind) in enumerate(rows):
        ids[r, :len(s)] = torch.tensor(s)
        # Label position j predicts token j + 1; the text before the first target is LM text.
        for begin, end in spans:
            (copy_mask if kind == COPY else answer_mask)[r, begin - 1:end - 1] = True
        lm_mask[r, :spans[0][0] - 1] = True
    is_prompt = torch.tensor([r[2] == PROMPT for r in rows])
    return ids, answer_mask, copy_mask, lm_mask, is_prompt


def induction_batch(a, rng):
    """A batch of the opening phase (--induction-loss): copy rows of random letters and
    digits only, --induction-len to twice that many tokens, --induction-batch-tokens per
    step. The repeat of a random string can only be predicted by looking back for the
    current byte and copying what followed it (an induction circuit), which needle
    retrieval builds on. With 128-256-token rows it did not form within 40 minutes on this
    CPU; with 32-64-token rows and 256-token batches (the defaults) it formed after 10,000 to
    55,000 steps, a few to 24 minutes (docs/LONG_CONTEXT.md)."""
    length = rng.randint(a.induction_len, 2 * a.induction_len)
    rows = [copy_row(*data.copy_example(None, length, rng, random_only=True))
            for _ in range(max(1, a.induction_batch_tokens // length))]
    return (*to_tensors(rows), length)


def step_loss(model, batch, a):
    ids, answer_mask, copy_mask, lm_mask, is_prompt, _ = batch
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
        logits = model(ids[:, :-1], use_cache=False).logits.float()
    labels = ids[:, 1:]
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                         reduction="none").view(labels.shape)
    am, cm, lmm = answer_mask[:, :-1], copy_mask[:, :-1], lm_mask[:, :-1]
    zero = ce.sum() * 0
    ans_loss = ce[am].mean() if am.any() else zero
    copy_loss = ce[cm].mean() if cm.any() else zero
    lm_loss = ce[lmm].mean()
    loss = ans_loss + a.copy_weight * copy_loss + a.lm_weight * lm_loss
    correct = ((logits.argmax(-1) == labels) | ~am).all(dim=1)
    # Exact answers are counted on prompts in the evaluation format only.
    return loss, ans_loss, copy_loss, lm_loss, correct[is_prompt]


def lr_at(a, step, p, inducing):
    """Linear warm-up over --warmup steps, flat through the opening phase (the copy circuit
    formed at the full rate, and a decaying rate would delay it), then cosine decay to 10%
    over the rest of the run."""
    if step < a.warmup:
        return a.lr * (step + 1) / a.warmup
    if inducing:
        return a.lr
    return a.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * after_opening(a, p))))


def save_final(model, cfg, out):
    from safetensors.torch import save_file
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    with open(os.path.join(out, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": data.BOS_ID, "eos_token_id": data.EOS_ID,
                   "pad_token_id": data.PAD_ID, "do_sample": False}, f, indent=2)
        f.write("\n")
    tensors = {k: v.detach().to("cpu", torch.bfloat16).contiguous()
               for k, v in model.state_dict().items() if "rotary_emb" not in k}
    path = os.path.join(out, "model.safetensors")
    save_file(tensors, path, metadata={"format": "pt"})
    os.chmod(path, 0o644)  # save_file creates it owner-only
    tokenizer_files.write(out)


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="models/needle-v2-demo")
    ap.add_argument("--ckpt", default="build/h-train/needle-train.pt",
                    help="resumable training state, rewritten every --ckpt-every steps")
    ap.add_argument("--haystack", default="data/haystack/haystack.txt")
    ap.add_argument("--attention", choices=("mla", "mha"), default="mla",
                    help="mha: the full-cache control (Llama architecture; torch only, the "
                         "engine serves MLA)")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-lora-rank", type=int, default=64)
    ap.add_argument("--nope-dim", type=int, default=32)
    ap.add_argument("--rope-dim", type=int, default=16)
    ap.add_argument("--v-dim", type=int, default=48,
                    help="48 = nope + rope: equal q/k and v widths let torch use its fused "
                         "attention kernel, 3x faster at 4K tokens")
    ap.add_argument("--intermediate", type=int, default=256)
    ap.add_argument("--vocab", type=int, default=264, help="256 bytes + specials, padded")
    ap.add_argument("--max-positions", type=int, default=8192)
    ap.add_argument("--rope-theta", type=float, default=10000.0)
    ap.add_argument("--steps", type=int, default=0,
                    help="end the schedule after this many steps if sooner than --max-minutes "
                         "(0: no step limit; opening-phase steps are small and many)")
    ap.add_argument("--tokens", type=float, default=0,
                    help="end the schedule after this many training tokens if sooner: a "
                         "budget that, unlike wall time, does not depend on the machine or "
                         "its load, so a rerun repeats the run (0: no token limit)")
    ap.add_argument("--tokens-after-opening", action="store_true",
                    help="count --tokens from the end of the opening phase, so that every "
                         "model gets the same needle training however long its copy circuit "
                         "took to form (the opening ends on --induction-loss, or after "
                         "--induction-max x --tokens tokens)")
    ap.add_argument("--batch-tokens", type=int, default=8192)
    ap.add_argument("--min-len", type=int, default=128)
    ap.add_argument("--max-len", type=int, default=5120,
                    help="longest training row: above the longest length evaluated (4K), "
                         "whose positions are otherwise seen only at the edge of training")
    ap.add_argument("--grow-acc", type=float, default=0.6,
                    help="the maximum length grows by 2^(1/2) whenever the exact-answer rate "
                         "of a log interval's rows reaches this (or by the --ramp schedule)")
    ap.add_argument("--ramp", type=float, default=0.75)
    ap.add_argument("--len-span", type=int, default=8,
                    help="rows are drawn between the current maximum length / this and it")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--lm-weight", type=float, default=0.2,
                    help="weight of the next-byte loss on haystack and question text")
    ap.add_argument("--copy-frac", type=float, default=0.2,
                    help="fraction of rows that are copy rows instead of needle prompts")
    ap.add_argument("--copy-weight", type=float, default=1.0)
    ap.add_argument("--induction-loss", type=float, default=1.0,
                    help="open on random copy rows only (induction_batch) until their logged "
                         "loss falls below this (0: no opening phase; see "
                         "docs/LONG_CONTEXT.md)")
    ap.add_argument("--induction-max", type=float, default=0.6,
                    help="the opening phase ends at this fraction of the run in any case")
    ap.add_argument("--induction-max-tokens", type=float, default=0,
                    help="the opening phase ends after this many training tokens in any case "
                         "(0: no limit)")
    ap.add_argument("--induction-batch-tokens", type=int, default=256,
                    help="tokens per step in the opening phase: small batches make the copy "
                         "circuit form in the fewest tokens (docs/LONG_CONTEXT.md)")
    ap.add_argument("--induction-len", type=int, default=32,
                    help="opening-phase rows are this to twice this many tokens long")
    ap.add_argument("--induction-threads", type=int, default=1,
                    help="threads in the opening phase, whose steps are too small to gain "
                         "from a second one")
    ap.add_argument("--multi-frac", type=float, default=0.5,
                    help="fraction of rows that are dense rows of several needles and questions")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="auto", help="auto (cuda when present), cpu or cuda")
    ap.add_argument("--export-only", action="store_true",
                    help="write --out from the --ckpt state without training")
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--ckpt-every", type=int, default=25)
    ap.add_argument("--max-minutes", type=float, default=60.0,
                    help="wall-time budget: the schedule ends at --steps, --tokens or here, "
                         "whichever comes first (0: no wall-time limit)")
    ap.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=False,
                    help="bf16 autocast (fp32 master weights); about 3x slower on a 2-core CPU")
    return ap.parse_args(argv)


def main(argv):
    a = parse_args(argv)
    torch.manual_seed(a.seed)
    cfg = model_config(a)
    device = torch.device("cuda" if a.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if a.device == "auto" else a.device))
    model = build_model(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=0.01)
    if a.steps <= 0 and a.tokens <= 0 and a.max_minutes <= 0:
        sys.exit("error: no budget: set --max-minutes, --steps or --tokens")
    rng, step, elapsed_before, seen, window = random.Random(a.seed), 0, 0.0, 0, None
    grown = a.min_len * 2  # the adaptive part of the length curriculum
    # The opening phase, and where it ended: progress then, recomputed from its step and
    # wall time on a resume, so that a resumed run with another --max-minutes keeps it right.
    inducing, a.phase_end, phase_end_at = a.induction_loss > 0, 0.0, None
    # With --tokens-after-opening the token budget starts when the opening ends: until then
    # it counts nothing (it once counted the opening's tokens, and a budget smaller than
    # the opening cut the opening short through --induction-max).
    a.tokens_total = math.inf if a.tokens_after_opening and inducing else a.tokens
    if os.path.exists(a.ckpt):
        st = torch.load(a.ckpt, weights_only=False, map_location=device)
        if st["config"] != cfg:
            sys.exit(f"error: {a.ckpt} was trained with another config; remove it or pass --ckpt")
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        rng.setstate(st["rng"])
        step, elapsed_before, seen = st["step"], st["elapsed"], st.get("seen", 0)
        window = st.get("window")
        grown = st.get("grown", grown)
        inducing, phase_end_at = st.get("inducing", False), st.get("phase_end_at")
        if phase_end_at and a.tokens_after_opening and len(phase_end_at) > 2:
            a.tokens_total = phase_end_at[2] + a.tokens
        a.phase_end = progress(a, *phase_end_at) if phase_end_at else st.get("phase_end", 0.0)
        print(f"resumed from {a.ckpt} at step {step} ({elapsed_before / 60:.1f} min)")
    if a.export_only:
        save_final(model, cfg, a.out)
        print(f"exported the state at step {step} to {a.out}")
        return
    params = sum(p.numel() for p in model.parameters())
    print(f"device {device}; params {params:,}; cache {cache_bytes_per_token(cfg)} B/token; "
          f"config {json.dumps(cfg)}", flush=True)
    sentences = data.load_sentences(a.haystack)
    model.train()
    t0, tokens, hits, total, sums = time.time(), 0, 0, 0, [0.0, 0.0, 0, 0.0]
    if window is not None:  # the log window in progress at the checkpoint (see below)
        hits, total, sums = window
    os.makedirs(os.path.dirname(a.ckpt) or ".", exist_ok=True)

    def checkpoint():
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "rng": rng.getstate(),
                    "step": step, "elapsed": elapsed_before + time.time() - t0, "config": cfg,
                    "seen": seen, "grown": grown, "inducing": inducing,
                    "phase_end": a.phase_end,
                    "phase_end_at": phase_end_at,
                    # The log window in progress: the opening phase ends and the curriculum
                    # grows on a window's means, so a resumed run must see the same windows
                    # as an uninterrupted one to repeat it.
                    "window": (hits, total, list(sums))},
                   a.ckpt + ".tmp")
        os.replace(a.ckpt + ".tmp", a.ckpt)

    # Opening-phase steps are --batch-tokens / --induction-batch-tokens times smaller, so
    # they log and checkpoint that many times less often.
    small = max(1, a.batch_tokens // a.induction_batch_tokens)
    while True:
        p = progress(a, step, elapsed_before + time.time() - t0, seen)
        # With --tokens-after-opening the budget is reached in the opening phase only when
        # the copy circuit has not formed by --induction-max: the opening then ends at the
        # next log window (below) and the needle budget starts, rather than the run.
        if p >= 1.0 and not (inducing and a.tokens_after_opening):
            break
        threads, scale = (a.induction_threads, small) if inducing else (a.threads, 1)
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        batch = tuple(t.to(device) if torch.is_tensor(t) else t
                      for t in make_batch(a, sentences, rng, p, grown, inducing))
        ids, length = batch[0], batch[-1]
        lr = lr_at(a, step, p, inducing)
        for g in opt.param_groups:
            g["lr"] = lr
        loss, ans, cp, lm, correct = step_loss(model, batch, a)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        tokens += ids.numel()
        seen += ids.numel()
        # A sequence counts as retrieved when every answer token is the argmax (= greedy).
        if 2 * length >= grown:  # only rows near the frontier decide the next length
            hits += int(correct.sum())
            total += int(correct.numel())
        sums[0] += float(ans.detach())
        sums[1] += float(lm.detach())
        sums[2] += 1
        sums[3] += float(cp.detach())
        if sums[2] >= a.log_every * scale:
            dt = time.time() - t0
            grew = total >= 8 and hits / total >= a.grow_acc and grown < a.max_len
            hi = 2 * a.induction_len if inducing else length_range(a, p, grown)[1]
            print(f"step {step:5d} len {length:4d}/{hi:4d} ans_loss {sums[0] / sums[2]:.3f} "
                  f"copy_loss {sums[3] / sums[2]:.3f} lm_loss {sums[1] / sums[2]:.3f} "
                  f"frontier_acc {hits / max(1, total):.3f} "
                  f"lr {lr:.2e} tok/s {tokens / dt:.0f} seen {seen / 1e6:.2f}M "
                  f"wall {(elapsed_before + dt) / 60:.1f} min", flush=True)
            copy_mean = sums[3] / sums[2]
            hits, total, sums = 0, 0, [0.0, 0.0, 0, 0.0]
            if inducing:
                grew = False  # the length curriculum starts with the needle rows
                if (copy_mean < a.induction_loss or p >= a.induction_max or
                        0 < a.induction_max_tokens <= seen):
                    inducing = False
                    phase_end_at = (step, elapsed_before + dt, seen)
                    if a.tokens_after_opening:
                        a.tokens_total = seen + a.tokens
                    a.phase_end = p = progress(a, *phase_end_at)
                    print(f"  opening phase ends at step {step} (copy loss {copy_mean:.3f}, "
                          f"progress {p:.2f}): needle rows and the length curriculum start",
                          flush=True)
            if grew:
                grown = min(a.max_len, int(grown * math.sqrt(2)))
                print(f"  frontier rows retrieved: the maximum length grows to {grown}",
                      flush=True)
        if step % (a.ckpt_every * scale) == 0:
            checkpoint()
    checkpoint()
    save_final(model, cfg, a.out)
    print(f"done: {step} steps, {seen / 1e6:.2f} M tokens, "
          f"{(elapsed_before + time.time() - t0) / 60:.1f} min wall; "
          f"saved {a.out}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
