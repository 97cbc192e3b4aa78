#!/usr/bin/env python3
"""Golden outputs for the committed tiny DeepSeek models from Hugging Face transformers.

For every model directory given, loads the checkpoint with transformers' own
DeepseekV2ForCausalLM / DeepseekV3ForCausalLM (float32, CPU, eager attention, local files
only) and writes <out-dir>/<model-dir-name>.safetensors holding, per prompt i:

  p{i}.prompt         I32 [T]         random token ids (deterministic from --prompt-seed)
  p{i}.logits         F32 [T, vocab]  logits at every prompt position
  p{i}.greedy         I32 [G]         greedy continuation, recomputing the full sequence
  p{i}.greedy_logits  F32 [G, vocab]  logits each greedy token was chosen from
                                      (row 0 = the last prompt position)

The places where transformers departs from the DeepSeek reference semantics are listed in
tools/reference/README.md; `check_supported` and `patch_v2_router` below handle them.
"""

import argparse
import hashlib
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
import transformers
from transformers import AutoModelForCausalLM
from transformers.models.deepseek_v2 import modeling_deepseek_v2

from numpy_reference import write_safetensors

DEFAULT_LENGTHS = "1,7,64,150"


def default_lengths(cfg):
    """V3.2: contexts at, just past and far past index_topk, so that both the dense and the
    sparse path are checked."""
    k = cfg.get("index_topk")
    return DEFAULT_LENGTHS if not k else f"1,7,{k},{k + 1},64,150"


def check_supported(cfg):
    """Refuses configs whose semantics transformers does not implement (see README.md)."""
    arch = cfg["architectures"][0]
    problems = []
    if cfg.get("moe_layer_freq", 1) != 1:
        problems.append("transformers ignores moe_layer_freq (every layer >= "
                        "first_k_dense_replace is MoE)")
    if arch == "DeepseekV2ForCausalLM":
        if cfg.get("scoring_func", "softmax") != "softmax":
            problems.append("DeepseekV2 in transformers always scores with softmax")
        if cfg.get("topk_method", "greedy") not in ("greedy", "group_limited_greedy"):
            problems.append("DeepseekV2 in transformers has no " + cfg["topk_method"])
    elif arch == "DeepseekV32ForCausalLM":
        if cfg.get("scoring_func", "sigmoid") != "sigmoid" or \
                cfg.get("topk_method", "noaux_tc") != "noaux_tc":
            problems.append("DeepseekV32 in transformers always uses sigmoid + noaux_tc")
        if not cfg.get("q_lora_rank"):
            problems.append("DeepseekV32 in transformers needs q_lora_rank")
    elif arch == "DeepseekV3ForCausalLM":
        if cfg.get("scoring_func", "sigmoid") != "sigmoid" or \
                cfg.get("topk_method", "noaux_tc") != "noaux_tc":
            problems.append("DeepseekV3 in transformers always uses sigmoid + noaux_tc")
        if cfg.get("rope_interleave") is False:
            problems.append("rope_interleave false is not DeepSeek's RoPE pair layout")
    else:
        problems.append("unsupported architecture " + arch)
    rs = cfg.get("rope_scaling")
    if rs and ("mscale" in rs) != ("mscale_all_dim" in rs):
        problems.append("transformers derives a different YaRN attention factor when only "
                        "one of mscale/mscale_all_dim is set")
    if problems:
        sys.exit("error: " + "; ".join(problems))


def patch_v2_router(model):
    """transformers' V2 router ignores norm_topk_prob; DeepSeek's normalizes instead of scaling."""
    cfg = model.config
    if not cfg.norm_topk_prob or cfg.num_experts_per_tok <= 1:
        return False
    original = modeling_deepseek_v2.DeepseekV2TopkRouter.forward

    def forward(self, hidden_states):
        router_logits, weights, indices = original(self, hidden_states)
        weights = weights / self.routed_scaling_factor  # undo the unconditional scaling
        return router_logits, weights / (weights.sum(dim=-1, keepdim=True) + 1e-20), indices

    for layer in model.model.layers:
        gate = getattr(layer.mlp, "gate", None)
        if isinstance(gate, modeling_deepseek_v2.DeepseekV2TopkRouter):
            gate.forward = forward.__get__(gate)
    return True


class RouterMargins:
    """Records how close each token's expert choice came to a tie (a flip would change it)."""

    def __init__(self, model):
        self.cfg, self.min_margin = model.config, float("inf")
        for layer in model.model.layers:
            gate = getattr(layer.mlp, "gate", None)
            if gate is not None and hasattr(gate, "topk_group"):
                gate.register_forward_hook(self._hook)

    def _hook(self, gate, _inputs, outputs):
        logits, k = outputs[0].detach().double(), gate.top_k
        if hasattr(gate, "e_score_correction_bias"):  # V3: sigmoid + bias, groups by top-2 sum
            s = logits.sigmoid() + gate.e_score_correction_bias.double()
            groups = s.view(s.shape[0], gate.num_group, -1).topk(2, dim=-1)[0].sum(-1)
        else:
            s = logits.softmax(dim=-1)
            groups = s.view(s.shape[0], gate.num_group or 1, -1).max(dim=-1).values
        if gate.num_group and gate.topk_group and gate.topk_group < gate.num_group:
            g = groups.sort(dim=-1, descending=True).values
            self._note(g[:, gate.topk_group - 1] - g[:, gate.topk_group])
            keep = torch.zeros_like(groups, dtype=torch.bool)
            keep.scatter_(1, groups.topk(gate.topk_group, dim=-1)[1], True)
            s = s.masked_fill(~keep.repeat_interleave(s.shape[1] // groups.shape[1], 1), -1e9)
        top = s.sort(dim=-1, descending=True).values
        self._note(top[:, k - 1] - top[:, k])

    def _note(self, margins):
        self.min_margin = min(self.min_margin, float(margins.min()))


def round_cached_latents_to_bf16(model):
    """Rounds what the engine's latent KV cache stores to bf16: the normalized latent c
    (kv_a_layernorm's output), the rotated k_pe and (V3.2) the indexer's key. Queries and all other math stay fp32,
    so these goldens are the exact function the engine computes with its bf16 cache."""
    import importlib

    def to_bf16(t):
        return t.to(torch.bfloat16).to(t.dtype)

    for layer in model.model.layers:
        norm = layer.self_attn.kv_a_layernorm
        norm.register_forward_hook(lambda _m, _i, out: to_bf16(out))
        indexer = getattr(layer.self_attn, "indexer", None)
        if indexer is not None:
            # The V3.2 indexer key: its unrotated part is cached as k_norm leaves it; the
            # rotated part is rounded after RoPE by the patch below.
            r = indexer.qk_rope_head_dim
            indexer.k_norm.register_forward_hook(
                lambda _m, _i, out, r=r: torch.cat([out[..., :r], to_bf16(out[..., r:])], -1))
    # deepseek_v32: apply_rotary_pos_emb_interleave rotates MLA's k_pe, apply_rotary_pos_emb
    # the indexer's key, which the engine caches in bf16 too.
    for arch, names in (("deepseek_v2", ("apply_rotary_emb",)),
                        ("deepseek_v3", ("apply_rotary_pos_emb", "apply_rotary_pos_emb_interleave")),
                        ("deepseek_v32", ("apply_rotary_pos_emb", "apply_rotary_pos_emb_interleave"))):
        module = importlib.import_module(f"transformers.models.{arch}.modeling_{arch}")
        for name in names:
            original = getattr(module, name)

            def rounded(*a, _original=original, **kw):
                q, k = _original(*a, **kw)
                return q, to_bf16(k)

            setattr(module, name, rounded)


class IndexerCapture:
    """Records, for the next forward, each layer's indexer inputs and outputs as the
    engine's layered tests need them: the rotated queries and keys, the per-head weights
    (n_heads^-0.5 applied), the causal index scores (-inf where masked) and the top-k."""

    def __init__(self, model):
        self.layers, self.enabled = {}, False
        for i, layer in enumerate(model.model.layers):
            ix = getattr(layer.self_attn, "indexer", None)
            if ix is not None:
                original = ix.forward
                ix.forward = self._wrap(ix, i, original)

    def _wrap(self, ix, layer, original):
        from transformers.models.deepseek_v32 import modeling_deepseek_v32 as m

        def forward(hidden_states, q_resid, position_embeddings, attention_mask, *a, **kw):
            topk = original(hidden_states, q_resid, position_embeddings, attention_mask, *a, **kw)
            if not self.enabled:
                return topk
            b, s, _ = hidden_states.shape
            cos, sin = position_embeddings
            r = ix.qk_rope_head_dim
            q = ix.wq_b(q_resid).view(b, s, ix.n_heads, ix.head_dim)
            k = ix.k_norm(ix.wk(hidden_states)).unsqueeze(2)
            q_rot, k_rot = m.apply_rotary_pos_emb(q[..., :r], k[..., :r], cos, sin, unsqueeze_dim=2)
            q = torch.cat([q_rot, q[..., r:]], dim=-1)
            k = torch.cat([k_rot, k[..., r:]], dim=-1).squeeze(2)
            scores = F.relu(torch.matmul(q.float(), k.transpose(-1, -2).float().unsqueeze(1))
                            * ix.softmax_scale)
            w = ix.weights_proj(hidden_states).float() * (ix.n_heads ** -0.5)
            index = torch.matmul(w.unsqueeze(-2), scores).squeeze(-2)
            causal = torch.ones(s, s, dtype=torch.bool).tril()
            index = index.masked_fill(~causal, float("-inf"))
            self.layers[layer] = dict(q=q[0].reshape(s, -1), k=k[0], w=w[0], scores=index[0],
                                      topk=topk[0])
            return topk

        return forward


def selection_stats(capture, k):
    """Rows whose k-th and (k+1)-th visible scores tie exactly, and the smallest gap."""
    ties, rows, min_gap = 0, 0, float("inf")
    for t in capture.layers.values():
        sc = t["scores"].double()
        for i in range(k, sc.shape[0]):  # rows that see more than k keys
            top = sc[i, : i + 1].sort(descending=True).values
            gap = float(top[k - 1] - top[k])
            rows += 1
            ties += gap == 0.0
            min_gap = min(min_gap, gap)
    return ties, rows, min_gap


def make_prompts(seed, lengths, vocab):
    rng = np.random.default_rng(seed)
    # Ids 0 and 1 are bos/eos in the tiny models; leave them out of the random text.
    return [rng.integers(2, vocab, size=n, dtype=np.int64) for n in lengths]


@torch.no_grad()
def run_prompt(model, prompt, steps):
    ids = torch.from_numpy(prompt)[None]
    logits = model(ids, use_cache=False).logits[0].float()
    greedy, greedy_logits, seq = [], [], ids
    for _ in range(steps):  # full recomputation: no cache involved in the goldens
        row = model(seq, use_cache=False).logits[0, -1].float()
        tok = int(row.argmax())
        greedy.append(tok)
        greedy_logits.append(row)
        seq = torch.cat([seq, torch.tensor([[tok]])], dim=1)
    return logits.numpy(), np.array(greedy, np.int32), torch.stack(greedy_logits).numpy()


@torch.no_grad()
def cached_decode_diff(model, prompt, greedy, greedy_logits):
    """Max |logit difference| of HF's own KV-cache decode against the recomputed goldens."""
    out = model(torch.from_numpy(prompt)[None], use_cache=True)
    first = torch.from_numpy(greedy_logits[0])
    cache, worst = out.cache, float((out.logits[0, -1] - first).abs().max())
    for j in range(1, len(greedy)):
        out = model(torch.tensor([[int(greedy[j - 1])]]), cache=cache, use_cache=True)
        cache = out.cache
        worst = max(worst, float((out.logits[0, -1] - torch.from_numpy(greedy_logits[j])).abs().max()))
    return worst


def top2_gap(rows):
    top = np.sort(rows, axis=-1)[:, -2:]
    return top[:, 1] - top[:, 0]


def checkpoint_digest(model_dir):
    h = hashlib.sha256()
    for name in sorted(os.listdir(model_dir)):
        if name.endswith(".safetensors") or name in ("config.json", "model.safetensors.index.json"):
            with open(os.path.join(model_dir, name), "rb") as f:
                h.update(name.encode() + b"\0" + f.read())
    return h.hexdigest()


def load_model(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    check_supported(cfg)
    model, info = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32, local_files_only=True, attn_implementation="eager",
        experts_implementation="eager", output_loading_info=True)
    unexpected = sorted(info["unexpected_keys"])
    mtp = f"model.layers.{cfg['num_hidden_layers']}."
    if info["missing_keys"] or info["mismatched_keys"] or \
            any(not k.startswith(mtp) for k in unexpected):
        sys.exit(f"error: {model_dir}: loading reported {info}")
    if unexpected:
        print(f"  ignored {len(unexpected)} MTP-layer weights ({mtp}*)")
    if model.config.tie_word_embeddings:
        sys.exit("error: tied embeddings are not a DeepSeek layout")
    model.eval()
    return model, cfg


def make_goldens(model_dir, out_dir, args):
    name = os.path.basename(os.path.normpath(model_dir))
    print(f"{name}:")
    model, cfg = load_model(model_dir)
    patched = patch_v2_router(model) if cfg["architectures"][0].startswith("DeepseekV2") else False
    if args.kv_cache_dtype == "bf16":
        round_cached_latents_to_bf16(model)
    margins = RouterMargins(model)
    capture = IndexerCapture(model)
    lengths = [int(x) for x in (args.lengths or default_lengths(cfg)).split(",")]
    tensors, gaps, cache_diff = {}, [], 0.0
    for i, prompt in enumerate(make_prompts(args.prompt_seed, lengths, cfg["vocab_size"])):
        logits, greedy, greedy_logits = run_prompt(model, prompt, args.greedy_steps)
        cache_diff = max(cache_diff, cached_decode_diff(model, prompt, greedy, greedy_logits))
        tensors[f"p{i}.prompt"] = prompt.astype(np.int32)
        tensors[f"p{i}.logits"] = logits.astype(np.float32)
        tensors[f"p{i}.greedy"] = greedy
        tensors[f"p{i}.greedy_logits"] = greedy_logits.astype(np.float32)
        if capture.layers is not None and i == len(lengths) - 1 and hasattr(model.config, "index_topk"):
            capture.enabled = True
            with torch.no_grad():
                model(torch.from_numpy(prompt)[None], use_cache=False)
            capture.enabled = False
            for layer, t in capture.layers.items():
                for key, v in t.items():
                    dtype = np.int32 if key == "topk" else np.float32
                    tensors[f"p{i}.idx{layer}.{key}"] = v.detach().numpy().astype(dtype)
            ties, rows, min_gap = selection_stats(capture, model.config.index_topk)
            print(f"  p{i}: indexer top-{model.config.index_topk}: {ties} exact ties at the "
                  f"k-th score over {rows} row-layers; smallest k/k+1 gap {min_gap:.3e}")
        gap = top2_gap(greedy_logits)
        gaps.append(gap.min())
        print(f"  p{i}: T={len(prompt):4d} greedy={greedy.tolist()} min top-2 gap "
              f"{gap.min():.4f} (all positions {top2_gap(logits).min():.4f}) "
              f"logit std {logits.std():.2f}")
    metadata = {
        "model": name, "torch_version": torch.__version__,
        "index_topk": str(getattr(model.config, "index_topk", 0)),
        "transformers_version": transformers.__version__, "numpy_version": np.__version__,
        "prompt_seed": str(args.prompt_seed), "prompt_lengths": ",".join(map(str, lengths)),
        "greedy_steps": str(args.greedy_steps), "num_prompts": str(len(lengths)),
        "checkpoint_sha256": checkpoint_digest(model_dir),
        "v2_norm_topk_prob_patch": str(patched).lower(),
        "kv_cache_dtype": args.kv_cache_dtype,
    }
    os.makedirs(out_dir, exist_ok=True)
    suffix = "" if args.kv_cache_dtype == "fp32" else "." + args.kv_cache_dtype + "-kv"
    path = os.path.join(out_dir, name + suffix + ".safetensors")
    write_safetensors(path, tensors, metadata)
    eos = cfg.get("eos_token_id")
    hit_eos = any(eos in tensors[k].tolist() for k in tensors if k.endswith(".greedy"))
    print(f"  wrote {path} ({os.path.getsize(path):,} bytes); min greedy top-2 gap "
          f"{min(gaps):.4f}; min router margin {margins.min_margin:.2e}; KV-cache decode "
          f"max |diff| {cache_diff:.2e}; greedy hits eos: {hit_eos}")
    return min(gaps)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dirs", nargs="+")
    ap.add_argument("--out-dir", default="tests/data/goldens")
    ap.add_argument("--prompt-seed", type=int, default=1234)
    ap.add_argument("--lengths", help="comma-separated prompt lengths (default: "
                    f"{DEFAULT_LENGTHS}; V3.2 adds lengths around index_topk)")
    ap.add_argument("--greedy-steps", type=int, default=8)
    ap.add_argument("--kv-cache-dtype", choices=["fp32", "bf16"], default="fp32",
                    help="bf16: round the cached latent and k_pe as the engine's cache does")
    args = ap.parse_args(argv)
    # One thread and deterministic kernels: the goldens are byte-for-byte reproducible.
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    for d in args.model_dirs:
        make_goldens(d, args.out_dir, args)


if __name__ == "__main__":
    main(sys.argv[1:])
