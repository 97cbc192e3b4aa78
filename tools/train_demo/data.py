"""Needle-in-a-haystack prompts in the shared format (see tools/train_demo/README.md).

Byte-level tokens: ids 0..255 are the bytes, then the special tokens below. A prompt is
BOS + haystack with needle(s) + question; the expected answer follows it. Everything is
derived from a `random.Random`, so a seed reproduces a prompt exactly.
"""

import random
import re

BOS_ID, EOS_ID, PAD_ID = 256, 257, 258
KINDS = ("passkey", "kv", "multi")


def encode(text):
    return list(text.encode("utf-8"))


def decode(ids):
    return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


def load_sentences(path):
    """Splits the corpus into sentences at whitespace after . ! ? (a closing quote stays inside)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    parts = []
    for line in text.splitlines():
        parts.extend(s for s in re.split(r'(?<=[.!?])\s+', line.strip()) if s)
    return parts


def passkey_needle(rng):
    d = f"{rng.randint(10000, 99999)}"
    return (f"The pass key is {d}. Remember it. {d} is the pass key.",
            "\nWhat is the pass key? The pass key is ", d)


def kv_pair(rng):
    k = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(4))
    v = f"{rng.randint(0, 9999):04d}"
    return k, v


def kv_question(k):
    return f"\nWhat is the value of key {k}? The value of key {k} is "


def make_needles(kind, depth, rng):
    """Returns ([(needle text, depth)], question, answer)."""
    if kind == "passkey":
        needle, question, answer = passkey_needle(rng)
        return [(needle, depth)], question, answer
    if kind == "kv":
        k, v = kv_pair(rng)
        return [(f"The value of key {k} is {v}.", depth)], kv_question(k), v
    pairs = []
    while len(pairs) < 3:
        k, v = kv_pair(rng)
        if all(k != p[0] for p in pairs):
            pairs.append((k, v))
    # One needle at the requested depth, the other two a third of the haystack away.
    depths = [depth, (depth + 1 / 3) % 1.0, (depth + 2 / 3) % 1.0]
    needles = [(f"The value of key {k} is {v}.", d) for (k, v), d in zip(pairs, depths)]
    k, v = pairs[rng.randrange(3)]
    return needles, kv_question(k), v


def build_prompt(sentences, length, kind, depth, rng):
    """Token ids of a prompt of at most `length` tokens, and the answer string.

    Consecutive sentences from a random start fill the budget left after BOS, needles and
    question; each needle goes between the two sentences nearest its depth (a fraction of the
    haystack's token length)."""
    needles, question, answer = make_needles(kind, depth, rng)
    fixed = 1 + len(encode(question)) + sum(len(encode(n)) + 1 for n, _ in needles)
    budget = length - fixed
    start = rng.randrange(len(sentences))
    hay, used, i = [], 0, start
    while True:
        s = encode(sentences[i % len(sentences)] + " ")
        if used + len(s) > budget:
            break
        hay.append(s)
        used += len(s)
        i += 1
        if i - start > len(sentences):
            break
    # Byte offsets of sentence boundaries; insert needles at the boundary nearest each depth.
    bounds = [0]
    for s in hay:
        bounds.append(bounds[-1] + len(s))
    inserts = {}
    for text, d in needles:
        target = d * used
        b = min(range(len(bounds)), key=lambda j: abs(bounds[j] - target))
        inserts.setdefault(b, []).append(encode(text + " "))
    ids = [BOS_ID]
    for j in range(len(hay) + 1):
        for n in inserts.get(j, []):
            ids.extend(n)
        if j < len(hay):
            ids.extend(hay[j])
    if ids[-1] == ord(" "):
        ids.pop()  # the question starts with a newline, not after a trailing space
    ids.extend(encode(question))
    return ids, answer


def training_example(sentences, length, rng, kinds=KINDS):
    """Prompt + answer + '.' + EOS and a per-token flag: 1 where the token is answer/after."""
    kind = rng.choice(kinds)
    prompt, answer = build_prompt(sentences, length, kind, rng.random(), rng)
    target = encode(answer + ".") + [EOS_ID]
    return prompt + target, len(prompt), len(encode(answer))


def random_words(rng, n_bytes):
    """Space-separated random 4-character words of capitals or digits, about n_bytes long."""
    words, size = [], 0
    while size < n_bytes:
        alphabet = "0123456789" if rng.random() < 0.5 else "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
        words.append("".join(rng.choice(alphabet) for _ in range(4)))
        size += 5
    return " ".join(words)


def copy_example(sentences, length, rng):
    """BOS + a segment + newline + the same segment again; the repeat is fully predictable by
    copying, which gives a dense signal for the look-back-and-copy circuit that needle
    retrieval needs. Returns (ids, start of the repeat). The segment is random words or
    haystack text, half of the time each."""
    half = max(8, (length - 2) // 2)
    if rng.random() < 0.5:
        seg = encode(random_words(rng, half))[:half]
    else:
        i, text = rng.randrange(len(sentences)), ""
        while len(text) < half:
            text += sentences[i % len(sentences)] + " "
            i += 1
        seg = encode(text)[:half]
    ids = [BOS_ID] + seg + [ord("\n")]
    return ids + seg, len(ids)
