#!/usr/bin/env python3
"""Writes a random DeepSeek-V2/V3/V3.2 checkpoint in the Hugging Face layout.

The output directory holds config.json, generation_config.json, the weights as bf16
safetensors sharded into --num-shards files and model.safetensors.index.json. The
safetensors files are written here with numpy alone (no torch, no safetensors package) so
that the checkpoint is an independent check of the C++ loader.

Every tensor is drawn from its own generator seeded by (--seed, crc32(name)), so a tensor's
values do not depend on the order, the sharding or the other sizes. Tensors are generated
and written in chunks of rows, so a multi-GB benchmark model never sits in memory whole.

Examples (see tools/README.md):
  python3 tools/make_tiny_model.py --variant v2-lite --out models/tiny-v2-lite
  python3 tools/make_tiny_model.py --variant v3 --out models/tiny-v3
  python3 tools/make_tiny_model.py --variant v32 --out models/tiny-v32
"""

import argparse
import json
import math
import os
import sys
import zlib

import numpy as np

# Defaults per variant: small models shaped like DeepSeek-V2-Lite and DeepSeek-V3.
PRESETS = {
    "v2-lite": dict(
        hidden_size=64, num_layers=3, num_heads=4, q_lora_rank=0, kv_lora_rank=32,
        qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16, intermediate_size=96,
        moe_intermediate_size=24, n_routed_experts=8, n_shared_experts=2,
        num_experts_per_tok=3, first_k_dense_replace=1, moe_layer_freq=1,
        topk_method="greedy", scoring_func="softmax", n_group=1, topk_group=1,
        norm_topk_prob=False, routed_scaling_factor=1.0, vocab_size=512, mtp_layers=0,
        rope_mscale=0.707, rope_mscale_all_dim=0.707, seed=1,
        architecture="DeepseekV2ForCausalLM", model_type="deepseek_v2"),
    "v3": dict(
        hidden_size=64, num_layers=4, num_heads=4, q_lora_rank=48, kv_lora_rank=32,
        qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16, intermediate_size=96,
        moe_intermediate_size=8, n_routed_experts=16, n_shared_experts=1,
        num_experts_per_tok=4, first_k_dense_replace=2, moe_layer_freq=1,
        topk_method="noaux_tc", scoring_func="sigmoid", n_group=4, topk_group=2,
        norm_topk_prob=True, routed_scaling_factor=2.5, vocab_size=512, mtp_layers=1,
        rope_mscale=1.0, rope_mscale_all_dim=1.0, seed=9,
        architecture="DeepseekV3ForCausalLM", model_type="deepseek_v3"),
    # DeepSeek-V3.2: V3 plus the lightning indexer (DSA). index_topk is small so that the
    # goldens' prompts exercise sparse attention; V3.2's config.json names no router (it
    # is V3's sigmoid + noaux_tc), so neither does this one.
    "v32": dict(
        hidden_size=64, num_layers=3, num_heads=4, q_lora_rank=48, kv_lora_rank=32,
        qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16, intermediate_size=96,
        moe_intermediate_size=8, n_routed_experts=16, n_shared_experts=1,
        num_experts_per_tok=4, first_k_dense_replace=1, moe_layer_freq=1,
        topk_method="noaux_tc", scoring_func="sigmoid", n_group=4, topk_group=2,
        norm_topk_prob=True, routed_scaling_factor=2.5, vocab_size=512, mtp_layers=0,
        rope_mscale=1.0, rope_mscale_all_dim=1.0, seed=35, index_n_heads=8,
        index_head_dim=16, index_topk=16,
        architecture="DeepseekV32ForCausalLM", model_type="deepseek_v32"),
}

CHUNK_ELEMENTS = 1 << 22  # rows are generated and written this many values at a time
DTYPE_BYTES = {"BF16": 2, "F32": 4}


def f32_to_bf16_bits(x):
    """Rounds float32 to bfloat16 (nearest, ties to even); returns the raw uint16 bits."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounding = ((bits >> 16) & 1) + np.uint32(0x7FFF)
    out = ((bits + rounding) >> 16).astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():  # keep NaN a (quiet) NaN instead of rounding it into infinity
        out[nan] = ((bits[nan] >> 16) | 0x0040).astype(np.uint16)
    return out


class Tensor:
    """One tensor to write: name, shape, stored dtype; values are N(mean, std^2)."""

    def __init__(self, name, shape, std, mean=0.0, dtype="BF16"):
        self.name, self.shape, self.std, self.mean, self.dtype = name, list(shape), std, mean, dtype

    @property
    def nbytes(self):
        return math.prod(self.shape) * DTYPE_BYTES[self.dtype]

    def chunks(self, seed):
        """Yields the tensor's bytes, row block by row block, in row-major order."""
        rng = np.random.default_rng([seed, zlib.crc32(self.name.encode())])
        rows, cols = (self.shape[0], math.prod(self.shape[1:])) if len(self.shape) > 1 \
            else (1, self.shape[0])
        step = max(1, CHUNK_ELEMENTS // cols)
        for r in range(0, rows, step):
            block = rng.standard_normal((min(step, rows - r), cols), dtype=np.float32)
            block *= np.float32(self.std)
            block += np.float32(self.mean)
            if self.dtype == "BF16":
                yield f32_to_bf16_bits(block).astype("<u2").tobytes()
            else:
                yield block.astype("<f4").tobytes()


def linear(name, out_dim, in_dim):
    # std 1/sqrt(fan_in) keeps each projection's output at the scale of its input.
    return Tensor(name + ".weight", (out_dim, in_dim), 1.0 / math.sqrt(in_dim))


def norm(name, dim):
    return Tensor(name + ".weight", (dim,), 0.1, mean=1.0)


def mlp(prefix, hidden, inter):
    return [linear(prefix + ".gate_proj", inter, hidden), linear(prefix + ".up_proj", inter, hidden),
            linear(prefix + ".down_proj", hidden, inter)]


def attention(p, a):
    qk = a.qk_nope_head_dim + a.qk_rope_head_dim
    out = []
    if a.q_lora_rank:
        out += [linear(p + "q_a_proj", a.q_lora_rank, a.hidden_size),
                norm(p + "q_a_layernorm", a.q_lora_rank),
                linear(p + "q_b_proj", a.num_heads * qk, a.q_lora_rank)]
    else:
        out.append(linear(p + "q_proj", a.num_heads * qk, a.hidden_size))
    out += [linear(p + "kv_a_proj_with_mqa", a.kv_lora_rank + a.qk_rope_head_dim, a.hidden_size),
            norm(p + "kv_a_layernorm", a.kv_lora_rank),
            linear(p + "kv_b_proj", a.num_heads * (a.qk_nope_head_dim + a.v_head_dim),
                   a.kv_lora_rank),
            linear(p + "o_proj", a.hidden_size, a.num_heads * a.v_head_dim)]
    if a.index_n_heads:  # V3.2's lightning indexer (transformers' DeepseekV32Indexer)
        out += [linear(p + "indexer.wq_b", a.index_n_heads * a.index_head_dim, a.q_lora_rank),
                linear(p + "indexer.wk", a.index_head_dim, a.hidden_size),
                norm(p + "indexer.k_norm", a.index_head_dim),
                Tensor(p + "indexer.k_norm.bias", (a.index_head_dim,), 0.1),
                linear(p + "indexer.weights_proj", a.index_n_heads, a.hidden_size)]
    return out


def is_moe_layer(a, i):
    return a.n_routed_experts > 0 and i >= a.first_k_dense_replace and i % a.moe_layer_freq == 0


def decoder_layer(a, i):
    p = f"model.layers.{i}."
    out = [norm(p + "input_layernorm", a.hidden_size)] + attention(p + "self_attn.", a)
    out.append(norm(p + "post_attention_layernorm", a.hidden_size))
    if not is_moe_layer(a, i):
        return out + mlp(p + "mlp", a.hidden_size, a.intermediate_size)
    out.append(linear(p + "mlp.gate", a.n_routed_experts, a.hidden_size))
    if a.scoring_func == "sigmoid":
        # V3 keeps the load-balancing bias in float32; it shifts which experts are chosen.
        out.append(Tensor(p + "mlp.gate.e_score_correction_bias", (a.n_routed_experts,), 0.1,
                          dtype="F32"))
    for e in range(a.n_routed_experts):
        out += mlp(p + f"mlp.experts.{e}", a.hidden_size, a.moe_intermediate_size)
    if a.n_shared_experts:
        out += mlp(p + "mlp.shared_experts", a.hidden_size,
                   a.moe_intermediate_size * a.n_shared_experts)
    return out


def mtp_layer(a, i):
    """V3's multi-token-prediction module: a decoder layer plus its own projections."""
    p = f"model.layers.{i}."
    return decoder_layer(a, i) + [
        Tensor(p + "embed_tokens.weight", (a.vocab_size, a.hidden_size), 1.0),
        norm(p + "enorm", a.hidden_size), norm(p + "hnorm", a.hidden_size),
        linear(p + "eh_proj", a.hidden_size, 2 * a.hidden_size),
        norm(p + "shared_head.norm", a.hidden_size),
        linear(p + "shared_head.head", a.vocab_size, a.hidden_size)]


def all_tensors(a):
    out = [Tensor("model.embed_tokens.weight", (a.vocab_size, a.hidden_size), 1.0)]
    for i in range(a.num_layers):
        out += decoder_layer(a, i)
    for i in range(a.num_layers, a.num_layers + a.mtp_layers):
        out += mtp_layer(a, i)
    out.append(norm("model.norm", a.hidden_size))
    out.append(linear("lm_head", a.vocab_size, a.hidden_size))
    return out


def split_shards(tensors, num_shards):
    """Splits the tensors, in order, into num_shards runs of about equal bytes."""
    total = sum(t.nbytes for t in tensors)
    shards, current, done = [[] for _ in range(num_shards)], 0, 0
    for t in tensors:
        if shards[current] and done >= total * (current + 1) / num_shards \
                and current + 1 < num_shards:
            current += 1
        shards[current].append(t)
        done += t.nbytes
    if any(not s for s in shards):
        sys.exit(f"error: {len(tensors)} tensors cannot fill {num_shards} shards")
    return shards


def write_safetensors(path, tensors, seed, metadata):
    """Writes one safetensors file, generating each tensor's data as it goes."""
    # Wider dtypes first keeps every tensor aligned to its element size (the data starts
    # 8-aligned), as the reference serializer does; the header records any order.
    tensors = sorted(tensors, key=lambda t: -DTYPE_BYTES[t.dtype])
    header, offset = {"__metadata__": metadata}, 0
    for t in tensors:
        header[t.name] = {"dtype": t.dtype, "shape": t.shape,
                          "data_offsets": [offset, offset + t.nbytes]}
        offset += t.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for t in tensors:
            written = 0
            for chunk in t.chunks(seed):
                f.write(chunk)
                written += len(chunk)
            assert written == t.nbytes, t.name
    return offset


def config_json(a):
    c = {
        "architectures": [a.architecture],
        "model_type": a.model_type,
        "hidden_size": a.hidden_size,
        "num_hidden_layers": a.num_layers,
        "num_attention_heads": a.num_heads,
        "num_key_value_heads": a.num_heads,
        "q_lora_rank": a.q_lora_rank or None,
        "kv_lora_rank": a.kv_lora_rank,
        "qk_nope_head_dim": a.qk_nope_head_dim,
        "qk_rope_head_dim": a.qk_rope_head_dim,
        "v_head_dim": a.v_head_dim,
        "intermediate_size": a.intermediate_size,
        "moe_intermediate_size": a.moe_intermediate_size,
        "n_routed_experts": a.n_routed_experts,
        "n_shared_experts": a.n_shared_experts,
        "num_experts_per_tok": a.num_experts_per_tok,
        "first_k_dense_replace": a.first_k_dense_replace,
        "moe_layer_freq": a.moe_layer_freq,
        "routed_scaling_factor": a.routed_scaling_factor,
        "topk_method": a.topk_method,
        "n_group": a.n_group,
        "topk_group": a.topk_group,
        "norm_topk_prob": a.norm_topk_prob,
        "scoring_func": a.scoring_func,
        "hidden_act": "silu",
        "vocab_size": a.vocab_size,
        "max_position_embeddings": a.max_position_embeddings,
        "rope_theta": a.rope_theta,
        "rope_scaling": None if a.no_yarn else {
            "type": "yarn",
            "factor": a.rope_factor,
            "original_max_position_embeddings": a.rope_original_max_position_embeddings,
            "beta_fast": a.rope_beta_fast,
            "beta_slow": a.rope_beta_slow,
            "mscale": a.rope_mscale,
            "mscale_all_dim": a.rope_mscale_all_dim,
        },
        "rms_norm_eps": 1e-06,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "tie_word_embeddings": False,
        "bos_token_id": a.bos_token_id,
        "eos_token_id": a.eos_token_id,
        "initializer_range": 0.02,
        "use_cache": True,
        "torch_dtype": "bfloat16",
    }
    if a.mtp_layers:
        c["num_nextn_predict_layers"] = a.mtp_layers
    if a.index_n_heads:
        c.update(index_n_heads=a.index_n_heads, index_head_dim=a.index_head_dim,
                 index_topk=a.index_topk)
        del c["topk_method"], c["scoring_func"]
    return c


def check_args(a):
    problems = []
    if a.qk_rope_head_dim % 2:
        problems.append("--qk-rope-head-dim must be even")
    if a.n_routed_experts:
        if not 1 <= a.num_experts_per_tok <= a.n_routed_experts:
            problems.append("--num-experts-per-tok must be in [1, --n-routed-experts]")
        if a.n_routed_experts % a.n_group:
            problems.append("--n-group must divide --n-routed-experts")
        if not 1 <= a.topk_group <= a.n_group:
            problems.append("--topk-group must be in [1, --n-group]")
        if a.topk_method == "noaux_tc" and a.n_routed_experts // a.n_group < 2:
            problems.append("noaux_tc needs at least 2 experts per group")
    if a.index_n_heads and (not a.q_lora_rank or a.index_head_dim < a.qk_rope_head_dim
                            or a.index_topk < 1):
        problems.append("the indexer needs --q-lora-rank, --index-head-dim >= "
                        "--qk-rope-head-dim and --index-topk >= 1")
    if not 0 <= a.eos_token_id < a.vocab_size or not 0 <= a.bos_token_id < a.vocab_size:
        problems.append("--bos-token-id/--eos-token-id must be inside the vocabulary")
    if problems:
        sys.exit("error: " + "; ".join(problems))


def parse_args(argv):
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--variant", choices=sorted(PRESETS), default="v2-lite")
    variant = first.parse_known_args(argv)[0].variant

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], parents=[first])
    ap.add_argument("--out", required=True, help="output directory (created)")
    ap.add_argument("--seed", type=int, help="random seed (default per variant)")
    ap.add_argument("--num-shards", type=int, default=2)
    ints = ["hidden_size", "num_layers", "num_heads", "q_lora_rank", "kv_lora_rank",
            "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "intermediate_size",
            "moe_intermediate_size", "n_routed_experts", "n_shared_experts",
            "num_experts_per_tok", "first_k_dense_replace", "moe_layer_freq", "n_group",
            "topk_group", "vocab_size", "mtp_layers", "index_n_heads", "index_head_dim",
            "index_topk"]
    for name in ints:
        ap.add_argument("--" + name.replace("_", "-"), type=int)
    ap.add_argument("--topk-method", choices=["greedy", "group_limited_greedy", "noaux_tc"])
    ap.add_argument("--scoring-func", choices=["softmax", "sigmoid"])
    ap.add_argument("--norm-topk-prob", action=argparse.BooleanOptionalAction)
    ap.add_argument("--routed-scaling-factor", type=float)
    ap.add_argument("--architecture")
    ap.add_argument("--model-type")
    ap.add_argument("--max-position-embeddings", type=int, default=163840)
    ap.add_argument("--rope-theta", type=float, default=10000.0)
    ap.add_argument("--no-yarn", action="store_true", help="plain RoPE (rope_scaling null)")
    ap.add_argument("--rope-factor", type=float, default=40.0)
    ap.add_argument("--rope-original-max-position-embeddings", type=int, default=4096)
    ap.add_argument("--rope-beta-fast", type=float, default=32.0)
    ap.add_argument("--rope-beta-slow", type=float, default=1.0)
    ap.add_argument("--rope-mscale", type=float)
    ap.add_argument("--rope-mscale-all-dim", type=float)
    ap.add_argument("--bos-token-id", type=int, default=0)
    ap.add_argument("--eos-token-id", type=int, default=1)
    ap.set_defaults(**{"index_n_heads": 0, "index_head_dim": 0, "index_topk": 0,
                       **PRESETS[variant]})
    a = ap.parse_args(argv)
    if a.q_lora_rank == 0:
        a.q_lora_rank = None
    check_args(a)
    return a


def main(argv):
    a = parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    tensors = all_tensors(a)
    shards = split_shards(tensors, a.num_shards)
    weight_map, total = {}, 0
    for k, shard in enumerate(shards):
        file = f"model-{k + 1:05d}-of-{a.num_shards:05d}.safetensors"
        total += write_safetensors(os.path.join(a.out, file), shard, a.seed, {"format": "pt"})
        weight_map.update({t.name: file for t in shard})
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    files = {
        "model.safetensors.index.json": index,
        "config.json": config_json(a),
        "generation_config.json": {"bos_token_id": a.bos_token_id,
                                   "eos_token_id": a.eos_token_id, "do_sample": False},
    }
    for name, obj in files.items():
        with open(os.path.join(a.out, name), "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")
    params = sum(math.prod(t.shape) for t in tensors)
    print(f"{a.out}: {len(tensors)} tensors, {params:,} parameters, {total:,} bytes "
          f"in {a.num_shards} shards (variant {a.variant}, seed {a.seed})")


if __name__ == "__main__":
    main(sys.argv[1:])
