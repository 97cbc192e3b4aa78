"""Needle-in-a-haystack prompts in the shared format (see tools/train_demo/README.md).

Byte-level tokens: ids 0..255 are the bytes, then the special tokens below. A prompt is
BOS + haystack with needle(s) + question; the expected answer follows it. Everything is
derived from a `random.Random`, so a seed reproduces a prompt exactly.
"""

import random
import re

BOS_ID, EOS_ID, PAD_ID = 256, 257, 258
KINDS = ("passkey", "kv", "multi")
ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


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
    """A 4-capital key and a 4-digit value from 1000 to 9999, as the recall harness draws."""
    k = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(4))
    v = f"{rng.randint(1000, 9999)}"
    return k, v


def kv_needle(k, v):
    return f"The value of key {k} is {v}."


def kv_question(k):
    return f"\nWhat is the value of key {k}? The value of key {k} is "


def distinct_pairs(n, rng):
    """n kv pairs with distinct keys and distinct values, so every question is unambiguous."""
    pairs = []
    while len(pairs) < n:
        k, v = kv_pair(rng)
        if all(k != p[0] and v != p[1] for p in pairs):
            pairs.append((k, v))
    return pairs


def make_needles(kind, depth, rng):
    """Returns ([(needle text, depth)], question, answer)."""
    if kind == "passkey":
        needle, question, answer = passkey_needle(rng)
        return [(needle, depth)], question, answer
    if kind == "kv":
        k, v = kv_pair(rng)
        return [(kv_needle(k, v), depth)], kv_question(k), v
    pairs = distinct_pairs(3, rng)
    # One needle at the requested depth, the others a third and two thirds further, wrapping.
    depths = [depth, (depth + 1 / 3) % 1.0, (depth + 2 / 3) % 1.0]
    needles = [(kv_needle(k, v), d) for (k, v), d in zip(pairs, depths)]
    k, v = pairs[rng.randrange(3)]
    return needles, kv_question(k), v


def haystack_window(sentences, budget, start):
    """Byte strings of consecutive sentences from a random start whose joined length (each
    counted with the space before it) is exactly `budget`: whole sentences are dropped from
    the front, then words cut off the first one, as the recall harness's prompt builder
    does, so the haystack usually starts mid-sentence."""
    window, total, i = [], 0, start
    while total < budget:
        s = sentences[i % len(sentences)].encode("utf-8")
        window.append(s)
        total += len(s) + 1
        i += 1
    excess = total - budget
    while excess > 0 and len(window) > 1 and excess >= len(window[0]) + 1:
        excess -= len(window.pop(0)) + 1
    if excess > 0:
        words = window[0].split(b" ")
        while words and len(b" ".join(words)) + 1 > len(window[0]) + 1 - excess:
            words.pop(0)
        if words:
            window[0] = b" ".join(words)
        else:
            window.pop(0)
    return [list(w) for w in window]


def assemble(window, needles):
    """Haystack pieces and needles joined by single spaces, each needle at the piece
    boundary nearest its depth (needles sharing a boundary keep their depth order)."""
    bounds = [0]
    for w in window:
        bounds.append(bounds[-1] + len(w) + 1)
    total = bounds[-1]
    at = []
    for j, (text, d) in enumerate(needles):
        b = min(range(len(bounds)), key=lambda k: abs(bounds[k] - d * total))
        at.append((b, d, j))
    at.sort()
    parts, nxt = [], 0
    for k in range(len(window) + 1):
        while nxt < len(at) and at[nxt][0] == k:
            parts.append(encode(needles[at[nxt][2]][0]))
            nxt += 1
        if k < len(window):
            parts.append(window[k])
    ids = []
    for j, p in enumerate(parts):
        if j:
            ids.append(ord(" "))
        ids.extend(p)
    return ids


def build_from_needles(sentences, length, needles, tail, rng):
    """BOS + haystack with needles + `tail` bytes, `length` tokens in all where it fits."""
    fixed = 1 + len(tail) + sum(len(encode(n)) + 1 for n, _ in needles)
    start, budget = rng.randrange(len(sentences)), max(0, length - fixed)
    best = None
    for _ in range(4):  # the harness's rounds: resize the budget by the miss, keep the best
        ids = [BOS_ID] + assemble(haystack_window(sentences, budget, start), needles) + tail
        if best is None or abs(len(ids) - length) < abs(len(best) - length):
            best = ids
        if len(ids) == length:
            break
        budget = max(0, budget - (len(ids) - length))
    return best


def build_prompt(sentences, length, kind, depth, rng):
    """Token ids of a prompt of `length` tokens (the recall harness's construction, byte
    for byte), and the answer string."""
    needles, question, answer = make_needles(kind, depth, rng)
    return build_from_needles(sentences, length, needles, encode(question), rng), answer


def training_example(sentences, length, rng, kinds=KINDS):
    """Prompt + answer + '.' + EOS, and [(first, end)] answer spans (the answer and '.')."""
    kind = rng.choice(kinds)
    prompt, answer = build_prompt(sentences, length, kind, rng.random(), rng)
    target = encode(answer + ".") + [EOS_ID]
    return prompt + target, [(len(prompt), len(prompt) + len(answer) + 1)]


def multi_question_example(sentences, length, rng):
    """A dense retrieval row: up to length/256 kv needles (and a passkey half of the time)
    at random depths, then several questions, each followed by its answer and '.'. Every
    answer is a long-range lookup, so one row supervises several retrievals where a prompt
    in the evaluation format supervises one."""
    n = rng.randint(1, max(1, min(12, length // 256)))
    pairs = distinct_pairs(n, rng)
    needles = [(kv_needle(k, v), rng.random()) for k, v in pairs]
    asks = [(kv_question(k), v) for k, v in rng.sample(pairs, rng.randint(1, min(n, 6)))]
    if rng.random() < 0.5:
        needle, question, answer = passkey_needle(rng)
        needles.append((needle, rng.random()))
        asks.insert(rng.randrange(len(asks) + 1), (question, answer))
    tail, spans = [], []
    for question, answer in asks:
        tail += encode(question)
        spans.append((len(tail), len(tail) + len(answer) + 1))
        tail += encode(answer + ".")
    tail.append(EOS_ID)
    ids = build_from_needles(sentences, length, needles, tail, rng)
    offset = len(ids) - len(tail)
    return ids, [(offset + a, offset + b) for a, b in spans]


def random_words(rng, n_bytes):
    """Space-separated random 4-character words of capitals or digits, about n_bytes long."""
    words, size = [], 0
    while size < n_bytes:
        alphabet = "0123456789" if rng.random() < 0.5 else "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
        words.append("".join(rng.choice(alphabet) for _ in range(4)))
        size += 5
    return " ".join(words)


def copy_example(sentences, length, rng, random_only=False):
    """BOS + a segment + newline + the same segment again; the repeat is fully predictable by
    copying, which gives a dense signal for the look-back-and-copy circuit that needle
    retrieval needs. Returns (ids, start of the repeat). The segment is random letters and
    digits, random words or haystack text, a third of the time each (always random letters
    and digits with `random_only`)."""
    half = max(8, (length - 2) // 2)
    u = 0.0 if random_only else rng.random()
    if u < 1 / 3:
        # Random letters and digits without spaces: the previous byte alone almost always
        # tells where to copy from, the plainest lesson for an induction head.
        seg = encode("".join(rng.choice(ALNUM) for _ in range(half)))
    elif u < 2 / 3:
        seg = encode(random_words(rng, half))[:half]
    else:
        i, text = rng.randrange(len(sentences)), ""
        while len(text) < half:
            text += sentences[i % len(sentences)] + " "
            i += 1
        seg = encode(text)[:half]
    ids = [BOS_ID] + seg + [ord("\n")]
    return ids + seg, len(ids)
