#!/usr/bin/env python3
"""Writes tests/data/tokenizer/goldens.json: token ids and decoded text from Hugging Face's
own `tokenizers` library, the reference that engine/tokenizer must match exactly.

Two parts:
  deepseek_v3  the real DeepSeek-V3 tokenizer (tests/data/tokenizer/deepseek-v3/) on a corpus
               of tricky inputs, plus decodes of random id sequences (most of them are not
               valid UTF-8 and exercise the U+FFFD replacement).
  tiny         a small hand-made byte-level BPE tokenizer (`base`) and variants of it, each a
               JSON merge patch (RFC 7386) over `base`, covering the features DeepSeek's file
               does not use: Split behaviors and invert, normalizers, ByteLevel's own regex
               and prefix space, added-token flags, ignore_merges, post-processor templates.

Usage (the pinned version is in requirements.txt):
  python3 -m venv tools/tokenizer/.venv
  tools/tokenizer/.venv/bin/pip install -r tools/tokenizer/requirements.txt
  tools/tokenizer/.venv/bin/python tools/tokenizer/make_goldens.py

Special tokens with add_special_tokens=True follow transformers' LlamaTokenizerFast (DeepSeek's
tokenizer_class): when tokenizer_config.json has add_bos_token/add_eos_token, the post-processor
becomes `[bos] $A [eos]` accordingly; otherwise tokenizer.json's own post_processor applies.
"""

import copy
import json
import lzma
import random
from pathlib import Path

import tokenizers
from tokenizers import Tokenizer
from tokenizers.processors import TemplateProcessing

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "tokenizer"


def token_content(value):
    """bos_token/eos_token in tokenizer_config.json: a string or an AddedToken dict."""
    if isinstance(value, dict):
        return value.get("content")
    return value


def apply_config(tok, config):
    """Mirrors LlamaTokenizerFast.update_post_processor for add_bos_token/add_eos_token."""
    if not config or ("add_bos_token" not in config and "add_eos_token" not in config):
        return
    parts, special = [], []
    for flag, key, before in (("add_bos_token", "bos_token", True),
                              ("add_eos_token", "eos_token", False)):
        if not config.get(flag, False):
            continue
        content = token_content(config.get(key))
        special.append((content, tok.token_to_id(content)))
        parts.append((before, f"{content}:0"))
    single = [p for b, p in parts if b] + ["$A:0"] + [p for b, p in parts if not b]
    tok.post_processor = TemplateProcessing(single=" ".join(single), special_tokens=special)


def encode_cases(tok, texts):
    cases = []
    for text in texts:
        with_special = tok.encode(text, add_special_tokens=True).ids
        plain = tok.encode(text, add_special_tokens=False).ids
        cases.append({
            "text": text,
            "ids": plain,
            "ids_with_special": with_special,
            "decoded": tok.decode(with_special, skip_special_tokens=False),
            "decoded_skip_special": tok.decode(with_special, skip_special_tokens=True),
        })
    return cases


def decode_cases(tok, id_lists):
    return [{
        "ids": ids,
        "decoded": tok.decode(ids, skip_special_tokens=False),
        "decoded_skip_special": tok.decode(ids, skip_special_tokens=True),
    } for ids in id_lists]


# ---------------------------------------------------------------------------- DeepSeek V3

DEEPSEEK_TEXTS = [
    # Empty and whitespace.
    "", " ", "  ", "\n", "\t", "a  b", "a   b", "a\tb", "a\t\tb", "a\nb", "a\n\nb", "a\r\nb",
    "a\r\n\r\n", "   \n   ", "\n\n\n", "x \n y", "trailing   ", " \t \n", "  leading",
    "\u00a0", "\u3000全角空格", "a\u2028b\u2029c", "\u180e", "a\u180e\u180e b", "x\u180e \u180ey",
    "\u200b", "\ufeffBOM", "\x0b\x0c", "\x00\x01\x7f", "a\u0085b", "a \u0085 b", "\u2003\u2003x",
    # Digits (DeepSeek splits \p{N} runs into groups of at most three).
    "1", "12", "123", "1234", "12345678901234567890", "3.14159", "1,000,000", "-42",
    "phone: +1 (555) 123-4567", "٣٤٥٦ ١٢", "①②③④", "ⅫⅣ", "１２３４５", "2024年12月31日",
    "v1.2.3-beta4", "0x1F600", "1e-10", "½ ¾",
    # CJK and Japanese (a Split of its own), Korean.
    "你好，世界！", "日本語のテキストとカタカナ", "한국어 텍스트입니다", "中文English混合123",
    "漢字かなカナ漢字", "龥龦", "ｱｲｳｴｵ", "「引用」と『二重』", "我爱北京天安门。",
    # Emoji: single, ZWJ sequences, modifiers, flags, variation selectors.
    "😀", "👨‍👩‍👧‍👦", "👍🏽", "🇺🇸🇫🇷", "❤️", "🏳️‍🌈", "a😀b", "😀😀😀", "I ❤ 🍕!",
    "🧑🏾‍💻 coding", "#️⃣", "☺︎",
    # Other scripts, combining marks.
    "Привет, мир!", "Ελληνικά γράμματα", "עברית שפה", "مرحبا بالعالم", "हिन्दी भाषा",
    "ภาษาไทย", "Tiếng Việt có dấu", "naïve café résumé", "e\u0301 a\u0308 n\u0303",
    "Ω≈ç√∫˜µ≤≥÷", "ǅungla", "ﬁ ﬂ", "𝔾𝕠𝕠𝕕 𝕞𝕠𝕣𝕟𝕚𝕟𝕘", "ᚠᚢᚦᚨᚱᚲ", "ꦗꦮ",
    # Special and added tokens inside text.
    "<｜begin▁of▁sentence｜>Hello", "Hi<｜end▁of▁sentence｜>", "<｜User｜>hi<｜Assistant｜>",
    "<｜begin▁of▁sentence｜><｜begin▁of▁sentence｜>", "<｜User", "<｜begin▁of▁sentence",
    " <｜User｜> ", "<|EOT|>", "x<|EOT|>y", "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>",
    "<｜place▁holder▁no▁0｜>", "<｜▁pad▁｜>", "<｜fim▁begin｜>def f():<｜fim▁hole｜><｜fim▁end｜>",
    "<｜begin▁of▁sentence｜>You are helpful.<｜User｜>What is 2+2?<｜Assistant｜>",
    "<<｜User｜>>", "<｜User｜｜>",
    # English, punctuation, contractions.
    "Hello world", "Hello, world!", "The quick brown fox jumps over the lazy dog.",
    "I'm sure they'll say we've done it; don't you think? YOU'RE RIGHT.",
    "!@#$%^&*()_+-=[]{}|;':\",./<>?`~", "...", "!!!???", "a.b.c", "(a)", "\"quoted\"",
    "http://example.com/path?q=1&r=2#frag", "user.name+tag@example.co.uk", "e.g. i.e. etc.",
    "—dash– and … ellipsis", "«guillemets» „low“ ‘single’",
    # Code.
    "def f(x):\n    return x ** 2\n",
    "int main() {\n\tstd::vector<int> v{1, 2, 3};\n\treturn v.size();\n}\n",
    '{"key": [1, 2.5, null, true], "nested": {"a": "b"}}',
    "<html><body class=\"x\">Hi &amp; bye</body></html>",
    "for i in $(seq 1 10); do echo \"$i\" | grep -E '^[0-9]+$'; done",
    "SELECT * FROM t WHERE id = 42 AND name LIKE '%x%';",
    "x->y; i++; a<<=2; b!=c && d>=e || !f",
    "    indented\n        more\n\ttab",
    "__init__ foo_bar_baz CamelCaseWord snake_case_123",
    "#include \"engine/tokenizer/tokenizer.h\"\r\n",
    # Long inputs.
    "a" * 1000, "abc" * 400, "Supercalifragilisticexpialidocious",
    "pneumonoultramicroscopicsilicovolcanoconiosis" * 8, "7" * 1000, " " * 300,
    "\n" * 100, "😀" * 60, "的" * 200, "-" * 200, "ab " * 300,
]


def random_texts(rng, count):
    """Random strings from pools of characters that the regexes treat differently."""
    pools = [
        "abcxyzABCXYZ", "0123456789", " \t\n\r", "!?.,;:'\"-_()[]{}<>/\\|@#$%^&*+=~`",
        "éüñçßøåÆŒ", "你好世界中文字", "あいうアイウ", "한국어", "Привет", "مرحب", "१२३٣٤",
        "😀👍🏽❤️🇺🇸", "\u200d\u0301\u0308\ufe0f", "\u00a0\u3000\u2028\u180e\u200b\u0085",
        "①ⅫⅣ½", "▁｜", "\x00\x7f\x1b",
    ]
    texts = []
    for _ in range(count):
        n = rng.randint(1, 40)
        texts.append("".join(rng.choice(rng.choice(pools)) for _ in range(n)))
    return texts


def random_codepoint_texts(rng, count):
    """Random code points from the assigned blocks of the BMP and the emoji plane."""
    ranges = [(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x52F), (0x590, 0x6FF), (0x900, 0x97F),
              (0xE00, 0xE7F), (0x1100, 0x11FF), (0x2000, 0x206F), (0x2190, 0x23FF),
              (0x3000, 0x30FF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0xFF00, 0xFFEF),
              (0x1F300, 0x1F64F), (0x1F900, 0x1F9FF)]
    texts = []
    for _ in range(count):
        chars = []
        for _ in range(rng.randint(1, 30)):
            lo, hi = rng.choice(ranges)
            chars.append(chr(rng.randint(lo, hi)))
        texts.append("".join(chars))
    return texts


def deepseek_part(rng):
    with lzma.open(DATA / "deepseek-v3" / "tokenizer.json.xz", "rt", encoding="utf-8") as f:
        tok = Tokenizer.from_str(f.read())
    config = json.loads((DATA / "deepseek-v3" / "tokenizer_config.json").read_text("utf-8"))
    apply_config(tok, config)
    texts = DEEPSEEK_TEXTS + random_texts(rng, 150) + random_codepoint_texts(rng, 100)
    vocab_size = tok.get_vocab_size(with_added_tokens=True)
    id_lists = [[rng.randrange(vocab_size) for _ in range(rng.randint(1, 8))]
                for _ in range(200)]
    # Byte tokens that are pieces of multi-byte characters, alone and out of order.
    id_lists += [[28927], [28927, 225], [225, 28927], [300], [300, 300, 300], [0, 28927, 1]]
    return {"cases": encode_cases(tok, texts), "decode_cases": decode_cases(tok, id_lists)}


# ---------------------------------------------------------------------------- tiny

def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def to_byte_level(text):
    table = bytes_to_unicode()
    return "".join(table[b] for b in text.encode("utf-8"))


TINY_MERGES = [  # (left, right) in plain text; converted to the byte-level alphabet
    (" ", "t"), ("h", "e"), (" t", "he"), ("i", "n"), (" ", "a"), ("e", "r"), ("o", "n"),
    (" ", "w"), ("o", "r"), (" w", "or"), ("l", "d"), (" wor", "ld"), ("l", "l"), ("e", "ll"),
    ("h", "ell"), ("hell", "o"), ("a", "b"), ("b", "c"), ("ab", "c"), ("a", "bc"), ("1", "2"),
    ("12", "3"), (" ", " "), ("  ", "  "), ("\n", "\n"), ("c", "o"), ("co", "d"), ("cod", "e"),
    (" ", "code"), ("-", "-"), ("x", "x"), ("e", "-"), ("-", "f"), ("l", "--"), ("--", "c"),
    ("2", "-"), ("-", "3"), ("5", " "), (" ", "1"), ("a", "-"),
]
TINY_BYTE_MERGES = [(0xE4, 0xBD)]  # the first two bytes of 你 (E4 BD A0): a partial character


def tiny_base():
    vocab = {}
    table = bytes_to_unicode()
    for b in range(256):
        vocab[table[b]] = b
    merges = []
    pairs = [(to_byte_level(l), to_byte_level(r)) for l, r in TINY_MERGES]
    pairs += [(table[l], table[r]) for l, r in TINY_BYTE_MERGES]
    for left_bl, right_bl in pairs:
        merges.append(f"{left_bl} {right_bl}")
        vocab.setdefault(left_bl + right_bl, len(vocab))
    vocab[to_byte_level(" abcabc")] = len(vocab)  # only reachable with ignore_merges
    n = len(vocab)

    def added(i, content, special, **flags):
        token = {"id": n + i, "content": content, "single_word": False, "lstrip": False,
                 "rstrip": False, "normalized": not special, "special": special}
        token.update(flags)
        return token

    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            added(0, "<s>", True), added(1, "</s>", True),
            added(2, "<mask>", True, lstrip=True, rstrip=True),
            added(3, "[W]", False, single_word=True),
            added(4, "hello world", False),
            added(5, "ñ", False),
            added(6, "<raw>", False, normalized=False),
        ],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                          "use_regex": True},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": merges},
    }


def byte_level(add_prefix_space, use_regex):
    return {"type": "ByteLevel", "add_prefix_space": add_prefix_space, "trim_offsets": True,
            "use_regex": use_regex}


def split(pattern, behavior, invert=False, kind="Regex"):
    return {"type": "Split", "pattern": {kind: pattern}, "behavior": behavior, "invert": invert}


def tiny_variants(base):
    variants = [("base", {}, None),
                ("prefix_space", {"pre_tokenizer": byte_level(True, True)}, None)]
    for behavior in ("Removed", "Isolated", "MergedWithPrevious", "MergedWithNext",
                     "Contiguous"):
        for invert in (False, True):
            pre = {"type": "Sequence", "pretokenizers": [
                split(r"-+|\d| ", behavior, invert), byte_level(False, False)]}
            variants.append((f"split_{behavior}_{'invert' if invert else 'plain'}",
                             {"pre_tokenizer": pre}, None))
    variants += [
        ("split_string", {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            split(".", "Isolated", kind="String"), byte_level(True, False)]}}, None),
        ("split_empty_matches", {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            split("x*", "Isolated"), byte_level(False, False)]}}, None),
        ("split_lookaround", {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            split(r"\s+(?!\S)|(?<=a)b|\p{Lu}\p{Ll}*", "Isolated"), byte_level(False, True)]}},
         None),
        ("split_then_prefix", {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            split(r"\d", "Isolated"), byte_level(True, True)]}}, None),
        ("normalizers", {"normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Replace", "pattern": {"Regex": r"\s+"}, "content": " "},
            {"type": "Replace", "pattern": {"String": "ñ"}, "content": "n~"},
            {"type": "Prepend", "prepend": "_"}]}}, None),
        ("single_normalizer", {"normalizer": {"type": "Replace", "pattern": {"String": "a"},
                                              "content": "b"}}, None),
        ("ignore_merges", {"model": {"ignore_merges": True}}, None),
        # The saved base writes merges as [left, right] pairs; older files use strings.
        ("merges_as_strings", {"model": {"merges": [
            m if isinstance(m, str) else " ".join(m) for m in base["model"]["merges"]]}}, None),
        ("template", {"post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "</s>", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {
                "<s>": {"id": "<s>", "ids": [base["added_tokens"][0]["id"]], "tokens": ["<s>"]},
                "</s>": {"id": "</s>", "ids": [base["added_tokens"][1]["id"]],
                         "tokens": ["</s>"]}}}}, None),
        ("config_bos_eos", {}, {"add_bos_token": True, "add_eos_token": True,
                                "bos_token": "<s>",
                                "eos_token": {"__type": "AddedToken", "content": "</s>"}}),
        ("config_no_bos", {"post_processor": {"type": "ByteLevel", "add_prefix_space": True,
                                              "trim_offsets": False, "use_regex": True}},
         {"add_bos_token": False, "bos_token": "<s>"}),
    ]
    return variants


TINY_TEXTS = [
    "", " ", "hello world", "Hello world", "hello worldly", " the abc abc ab c abcabc",
    "abcabc abcabc", " abcabc", "the-final--countdown", "12-3 45 123123", "a.b.c..d",
    "xaxxbx", "<s>hello</s>", "hi <mask> there", "a<mask>b", "\t<mask>\t<mask>\u2000x",
    "x [W] y[W] [W]z [W]", "niño ñ", "  spaces   here  ", "tabs\t\tand\nnewlines\r\n",
    "你好", "😀 ok", "multi\u3000space", "code code  code", "A Bc aab", "<raw>x<raw>",
    "ñ<s>ñ", "aaa bbb",
]


def merge_patch(target, patch):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def tiny_part():
    # Round-trip through the library so that the added-token ids are the ones it assigns
    # ("ñ" is also a byte of the model vocabulary and takes that id), as in a saved file.
    base = json.loads(Tokenizer.from_str(json.dumps(tiny_base())).to_str())
    variants = []
    for name, patch, config in tiny_variants(base):
        tok = Tokenizer.from_str(json.dumps(merge_patch(base, patch)))
        apply_config(tok, config)
        variants.append({"name": name, "patch": patch, "config": config,
                         "cases": encode_cases(tok, TINY_TEXTS)})
    return {"base": base, "variants": variants}


def main():
    rng = random.Random(20240801)
    goldens = {
        "generator": f"tools/tokenizer/make_goldens.py, tokenizers {tokenizers.__version__}",
        "deepseek_v3": deepseek_part(rng),
        "tiny": tiny_part(),
    }
    out = DATA / "goldens.json"
    out.write_text(json.dumps(goldens, ensure_ascii=True, indent=None, separators=(",", ":"))
                   + "\n", encoding="utf-8")
    print(f"wrote {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
