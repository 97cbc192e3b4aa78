#!/usr/bin/env python3
"""Checks the goldens against an independent numpy forward pass (numpy only, float64).

The forward pass follows the DeepSeek semantics listed in tools/reference/README.md (plain,
non-absorbed MLA; interleaved-pair RoPE with YaRN; softmax/sigmoid gating with groups, correction bias,
normalization and routed scaling). It shares no code with transformers, so agreement
means the goldens follow those semantics and not a transformers quirk.

  python3 tools/reference/numpy_reference.py models/tiny-v2-lite tests/data/goldens/tiny-v2-lite.safetensors
"""

import argparse
import json
import math
import os
import sys

import numpy as np


def read_safetensors(path):
    """Returns ({name: float64/int array}, metadata) from one safetensors file."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        raw = data[h["data_offsets"][0]:h["data_offsets"][1]]
        if h["dtype"] == "BF16":
            bits = np.frombuffer(raw, "<u2").astype(np.uint32) << 16
            arr = bits.view(np.float32).astype(np.float64)
        else:
            arr = np.frombuffer(raw, {"F32": "<f4", "I32": "<i4"}[h["dtype"]])
            arr = arr.astype(np.float64 if h["dtype"] == "F32" else np.int64)
        out[name] = arr.reshape(h["shape"])
    return out, header.get("__metadata__", {})


def write_safetensors(path, tensors, metadata):
    """Minimal safetensors writer: u64 LE header size, space-padded JSON, contiguous data."""
    dtypes = {np.dtype("float32"): "F32", np.dtype("int32"): "I32"}
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name, arr in tensors.items():
        data = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtypes[arr.dtype], "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text + b"".join(blobs))


def yarn_mscale(factor, mscale):
    return 0.1 * mscale * math.log(factor) + 1.0 if factor > 1 and mscale else 1.0


class Model:
    def __init__(self, model_dir):
        with open(os.path.join(model_dir, "config.json")) as f:
            self.c = json.load(f)
        with open(os.path.join(model_dir, "model.safetensors.index.json")) as f:
            files = set(json.load(f)["weight_map"].values())
        self.w = {}
        for name in files:
            self.w.update(read_safetensors(os.path.join(model_dir, name))[0])
        self._init_rope()
        # Optional (lat, k_pe) -> (lat, k_pe) applied where the engine writes its cache.
        self.cache_round = None

    def _init_rope(self):
        c, rs = self.c, self.c.get("rope_scaling") or {}
        dim, base = c["qk_rope_head_dim"], c["rope_theta"]
        i = np.arange(dim // 2)
        inv = base ** (-2.0 * i / dim)
        self.softmax_scale = (c["qk_nope_head_dim"] + dim) ** -0.5
        self.cs_scale = 1.0
        if rs:
            factor, l0 = rs["factor"], rs["original_max_position_embeddings"]

            def cdim(r):
                return dim * math.log(l0 / (2 * math.pi * r)) / (2 * math.log(base))

            low = max(math.floor(cdim(rs.get("beta_fast", 32))), 0)
            high = min(math.ceil(cdim(rs.get("beta_slow", 1))), dim - 1)
            high += 0.001 if low == high else 0
            ramp = np.clip((i - low) / (high - low), 0, 1)
            inv = inv * ((1 - ramp) + ramp / factor)
            m_all = yarn_mscale(factor, rs.get("mscale_all_dim", 0))
            self.cs_scale = yarn_mscale(factor, rs.get("mscale", 1)) / m_all
            self.softmax_scale *= m_all * m_all
        self.inv_freq = inv

    def lin(self, x, name):
        return x @ self.w[name + ".weight"].T

    def rms(self, x, name, eps=None):
        eps = self.c.get("rms_norm_eps", 1e-6) if eps is None else eps
        return self.w[name + ".weight"] * x / np.sqrt((x * x).mean(-1, keepdims=True) + eps)

    def rope(self, x, pos):
        """Rotates the pairs (x[2i], x[2i+1]) by pos * inv_freq[i]."""
        ang = pos[:, None] * self.inv_freq[None]
        cos, sin = np.cos(ang) * self.cs_scale, np.sin(ang) * self.cs_scale
        a, b = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2], out[..., 1::2] = a * cos - b * sin, a * sin + b * cos
        return out

    def mlp(self, x, p):
        g = self.lin(x, p + ".gate_proj")
        return self.lin(g / (1 + np.exp(-g)) * self.lin(x, p + ".up_proj"), p + ".down_proj")

    def attention(self, x, p, pos):
        c, t = self.c, x.shape[0]
        nh, nope, rope, vd, lr = (c["num_attention_heads"], c["qk_nope_head_dim"],
                                  c["qk_rope_head_dim"], c["v_head_dim"], c["kv_lora_rank"])
        if c.get("q_lora_rank"):  # q_a/kv_a norms use eps 1e-6 in DeepSeek's code
            q = self.lin(self.rms(self.lin(x, p + "q_a_proj"), p + "q_a_layernorm", 1e-6),
                         p + "q_b_proj")
        else:
            q = self.lin(x, p + "q_proj")
        q = q.reshape(t, nh, nope + rope).transpose(1, 0, 2)
        ckv = self.lin(x, p + "kv_a_proj_with_mqa")
        lat = self.rms(ckv[:, :lr], p + "kv_a_layernorm", 1e-6)
        k_pe = self.rope(ckv[:, lr:], pos)
        if self.cache_round is not None:  # what a latent cache stores (fp8_cache_sim.py)
            lat, k_pe = self.cache_round(lat, k_pe)
        kv = self.lin(lat, p + "kv_b_proj").reshape(t, nh, nope + vd).transpose(1, 0, 2)
        s = q[..., :nope] @ kv[..., :nope].transpose(0, 2, 1)
        s = (s + self.rope(q[..., nope:], pos) @ k_pe.T[None]) * self.softmax_scale
        s = s + np.triu(np.full((t, t), -np.inf), 1)
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        out = (s @ kv[..., nope:]).transpose(1, 0, 2).reshape(t, nh * vd)
        return self.lin(out, p + "o_proj")

    def route(self, logits, p):
        """Expert ids and weights for one token's router logits."""
        c = self.c
        n, k, groups = c["n_routed_experts"], c["num_experts_per_tok"], c.get("n_group") or 1
        if c.get("scoring_func", "softmax") == "sigmoid":
            s = 1 / (1 + np.exp(-logits))
            choice = s + self.w.get(p + ".gate.e_score_correction_bias", np.zeros(n))
            group_score = np.sort(choice.reshape(groups, -1), -1)[:, -2:].sum(-1)
        else:
            s = np.exp(logits - logits.max())
            s /= s.sum()
            choice, group_score = s, s.reshape(groups, -1).max(-1)
        if c.get("topk_method", "greedy") != "greedy":
            mask = np.full(groups, -np.inf)
            mask[np.argsort(-group_score, kind="stable")[:c["topk_group"]]] = 0
            choice = choice + np.repeat(mask, n // groups)
        idx = np.argsort(-choice, kind="stable")[:k]
        w = s[idx]
        sigmoid = c.get("scoring_func") == "sigmoid"
        if c.get("norm_topk_prob"):
            w = w / (w.sum() + 1e-20)
        if sigmoid or not c.get("norm_topk_prob"):
            w = w * c.get("routed_scaling_factor", 1.0)
        return idx, w

    def moe(self, x, p):
        logits = self.lin(x, p + ".gate")
        out = np.zeros_like(x)
        for t in range(x.shape[0]):
            for e, w in zip(*self.route(logits[t], p)):
                out[t] += w * self.mlp(x[t:t + 1], f"{p}.experts.{e}")[0]
        if self.c.get("n_shared_experts"):
            out += self.mlp(x, p + ".shared_experts")
        return out

    def forward(self, tokens):
        c = self.c
        pos = np.arange(len(tokens), dtype=np.float64)
        x = self.w["model.embed_tokens.weight"][tokens]
        for i in range(c["num_hidden_layers"]):
            p = f"model.layers.{i}."
            x = x + self.attention(self.rms(x, p + "input_layernorm"), p + "self_attn.", pos)
            h = self.rms(x, p + "post_attention_layernorm")
            moe = c.get("n_routed_experts") and i >= c.get("first_k_dense_replace", 0) \
                and i % c.get("moe_layer_freq", 1) == 0
            x = x + (self.moe(h, p + "mlp") if moe else self.mlp(h, p + "mlp"))
        return self.lin(self.rms(x, "model.norm"), "lm_head")


def check(model_dir, golden_path, tol):
    model = Model(model_dir)
    golden, meta = read_safetensors(golden_path)
    worst, ok = 0.0, True
    for i in range(int(meta["num_prompts"])):
        prompt, greedy = golden[f"p{i}.prompt"], golden[f"p{i}.greedy"]
        # One pass over prompt + greedy tokens yields both the prompt and the greedy logits.
        logits = model.forward(np.concatenate([prompt, greedy[:-1]]))
        t = len(prompt)
        diff = max(np.abs(logits[:t] - golden[f"p{i}.logits"]).max(),
                   np.abs(logits[t - 1:] - golden[f"p{i}.greedy_logits"]).max())
        same = bool((logits[t - 1:].argmax(-1) == greedy).all())
        worst, ok = max(worst, diff), ok and same and diff <= tol
        print(f"  p{i}: T={t} max |logit diff| {diff:.2e}, greedy tokens agree: {same}")
    print(f"{golden_path}: {'OK' if ok else 'MISMATCH'} (max |diff| {worst:.2e}, tol {tol})")
    return ok


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pairs", nargs="+", help="model_dir golden.safetensors [model_dir golden ...]")
    ap.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args(argv)
    if len(args.pairs) % 2:
        sys.exit("error: give model directories and golden files in pairs")
    ok = True
    for model_dir, golden in zip(args.pairs[0::2], args.pairs[1::2]):
        ok = check(model_dir, golden, args.tol) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
