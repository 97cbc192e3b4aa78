#!/usr/bin/env python3
"""What an FP8 latent cache does to a model's outputs: a reference simulation.

Runs the independent numpy forward pass (numpy_reference.py) twice over each prompt of a
golden file: once with the cached latent c and k_pe rounded to bf16 (the engine's bf16
cache) and once with c in DeepSeek's FP8 layout (the engine's fp8 cache):

  per group of 128 latent values (the last group takes the rest when 128 does not divide
  the latent width): scale = max(amax / 448, FLT_MIN) in fp32; code = e4m3(c / scale),
  c / scale computed in fp32, rounded to nearest even, saturated at +-448; the cache
  gives back fp32(code) * scale. k_pe is stored in bf16 in both layouts.

e4m3 rounding is exact here (no fp8 dtype needed): below 448 the representable values
with exponent e are multiples of 2^(e-3) (e >= -6; smaller values are the subnormals,
multiples of 2^-9), so rounding to the nearest multiple with numpy's half-to-even round
is round-to-nearest-even.

Writes <out-dir>/<model>.fp8-kv-sim.safetensors with, per prompt i, `p{i}.prompt` and
`p{i}.fp8_logits` (F32 [T, vocab]; the C++ test gets its bf16 side from the engine's own
bf16 cache, which the bf16-kv goldens pin down) and the drift summary in the
metadata: |delta logprob| of each prompt token (fp8 vs bf16 cache) as median, p90 and
max, and the share of positions whose argmax token agrees; `bf16_vs_fp32_*` the same for
the bf16 cache against no rounding at all, for scale. The C++ test
(tests/engine/model/fp8_cache_test.cc) compares the engine's fp8 logits with
`fp8_logits` and bounds the engine's own drift by these figures.

  python3 tools/reference/fp8_cache_sim.py models/tiny-v2-lite models/tiny-v3
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy_reference as ref  # noqa: E402

GROUP = 128
FLT_MIN = np.float32(np.finfo(np.float32).tiny)


def bf16_round(x):
    """fp32 -> bf16 (round to nearest even) -> float64, as FloatToBf16."""
    u = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.astype(np.uint32).view(np.float32).astype(np.float64)


def e4m3_round(y):
    """fp32 values -> the nearest e4m3 value (ties to even), saturated at +-448."""
    a = np.abs(y).astype(np.float64)
    _, ex = np.frexp(a)  # a = m * 2^ex with m in [0.5, 1)
    e = np.maximum(ex - 1, -6)
    step = np.exp2(e - 3.0)
    r = np.minimum(np.round(a / step) * step, 448.0)
    return np.copysign(r, y)


def fp8_round_latent(lat):
    """[T, L] float64 latent -> what the fp8 cache gives back (float64)."""
    lat32 = lat.astype(np.float32)
    out = np.empty_like(lat32)
    for g in range(0, lat32.shape[1], GROUP):
        x = lat32[:, g:g + GROUP]
        amax = np.abs(x).max(axis=1, keepdims=True)
        scale = np.maximum(amax / np.float32(448.0), FLT_MIN).astype(np.float32)
        codes = e4m3_round(x / scale).astype(np.float32)  # x / scale in fp32
        out[:, g:g + GROUP] = codes * scale
    return out.astype(np.float64)


def bf16_cache(lat, k_pe):
    return bf16_round(lat), bf16_round(k_pe)


def fp8_cache(lat, k_pe):
    return fp8_round_latent(lat), bf16_round(k_pe)


def log_softmax(x):
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def drift(prompts, bf16, fp8):
    """|delta logprob| of every next prompt token, and argmax agreement, over all prompts."""
    deltas, agree, total = [], 0, 0
    for prompt, a, b in zip(prompts, bf16, fp8):
        la, lb = log_softmax(a.astype(np.float64)), log_softmax(b.astype(np.float64))
        t = np.arange(len(prompt) - 1)
        deltas.append(np.abs(lb[t, prompt[1:]] - la[t, prompt[1:]]))
        agree += int((a.argmax(-1) == b.argmax(-1)).sum())
        total += len(prompt)
    d = np.concatenate(deltas)
    return {"tokens": len(d), "median": float(np.median(d)), "p90": float(np.quantile(d, 0.9)),
            "max": float(d.max()), "argmax_agreement": agree / total}


def simulate(model_dir, golden_path, out_dir, lengths, seed):
    name = os.path.basename(os.path.normpath(model_dir))
    model = ref.Model(model_dir)
    rng = np.random.default_rng(seed)
    vocab = model.c["vocab_size"]
    prompts = [rng.integers(2, vocab, size=n).astype(np.int64) for n in lengths]
    tensors, fp32_all, bf16_all, fp8_all = {}, [], [], []
    golden = ref.read_safetensors(golden_path)[0]
    for i, prompt in enumerate(prompts):
        model.cache_round = None
        fp32_all.append(model.forward(prompt))
        model.cache_round = bf16_cache
        bf16 = model.forward(prompt)
        model.cache_round = fp8_cache
        fp8 = model.forward(prompt)
        bf16_all.append(bf16)
        fp8_all.append(fp8)
        tensors[f"p{i}.prompt"] = prompt.astype(np.int32)
        tensors[f"p{i}.fp8_logits"] = fp8.astype(np.float32)
    # The bf16 simulation against transformers' bf16-kv goldens (same rounding points,
    # independent code): shows that the simulation models the cache as the goldens do.
    model.cache_round = bf16_cache
    check = max(float(np.abs(model.forward(golden[f"p{j}.prompt"]) - golden[f"p{j}.logits"]).max())
                for j in range(sum(1 for k in golden if k.endswith(".prompt"))))
    stats = drift(prompts, bf16_all, fp8_all)
    bf16_stats = drift(prompts, fp32_all, bf16_all)  # the bf16 cache's own drift, for scale
    meta = {"model": name, "numpy_version": np.__version__, "prompt_seed": str(seed),
            "prompt_lengths": ",".join(map(str, lengths)), "num_prompts": str(len(prompts)),
            "scale_group": str(GROUP), "bf16_sim_vs_bf16_kv_golden_max_abs": repr(check)}
    meta.update({k: repr(v) for k, v in stats.items()})
    meta.update({"bf16_vs_fp32_" + k: repr(v) for k, v in bf16_stats.items()})
    path = os.path.join(out_dir, name + ".fp8-kv-sim.safetensors")
    ref.write_safetensors(path, tensors, meta)
    print(f"{name}: {stats['tokens']} prompt tokens: |delta logprob| median "
          f"{stats['median']:.4f}, p90 {stats['p90']:.4f}, max {stats['max']:.4f}; argmax "
          f"agreement {stats['argmax_agreement']:.4f} (bf16 vs fp32 cache: median "
          f"{bf16_stats['median']:.4f}, p90 {bf16_stats['p90']:.4f}, max {bf16_stats['max']:.4f}, "
          f"agreement {bf16_stats['argmax_agreement']:.4f}); bf16 sim vs goldens {check:.2e}; "
          f"wrote {path}")
    return stats


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dirs", nargs="+")
    ap.add_argument("--goldens", default="tests/data/goldens")
    ap.add_argument("--out-dir", default="tests/data/goldens")
    ap.add_argument("--lengths", default="1,7,64,150,300")
    ap.add_argument("--prompt-seed", type=int, default=4321)
    args = ap.parse_args(argv)
    lengths = [int(x) for x in args.lengths.split(",")]
    for d in args.model_dirs:
        name = os.path.basename(os.path.normpath(d))
        simulate(d, os.path.join(args.goldens, name + ".bf16-kv.safetensors"), args.out_dir,
                 lengths, args.prompt_seed)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
