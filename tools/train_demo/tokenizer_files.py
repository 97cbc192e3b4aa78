"""Writes a byte-level Hugging Face tokenizer (tokenizer.json + tokenizer_config.json).

One token per byte: a BPE model whose vocabulary is the 256 byte-level characters (GPT-2's
byte-to-unicode mapping) and no merges, so every byte stays its own token and ids 0..255 are
the byte values. The special tokens take the ids right after them (see data.py).
"""

import json
import os

import data

SPECIALS = [("<｜begin▁of▁sentence｜>", data.BOS_ID), ("<｜end▁of▁sentence｜>", data.EOS_ID),
            ("<｜▁pad▁｜>", data.PAD_ID)]
BOS, EOS, PAD = (name for name, _ in SPECIALS)

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}"
    "{{ m['content'] }}{% elif m['role'] == 'assistant' %}{{ m['content'] }}{{ eos_token }}"
    "{% else %}{{ m['content'] }}\n{% endif %}{% endfor %}")


def byte_to_unicode():
    """GPT-2's reversible map from the 256 bytes to printable unicode characters."""
    keep = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) +
            list(range(ord("®"), ord("ÿ") + 1)))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def tokenizer_json():
    vocab = {ch: b for b, ch in byte_to_unicode().items()}
    added = [{"id": i, "content": name, "single_word": False, "lstrip": False,
              "rstrip": False, "normalized": False, "special": True} for name, i in SPECIALS]
    bos = {"SpecialToken": {"id": BOS, "type_id": 0}}
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                          "use_regex": False},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [bos, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [bos, {"Sequence": {"id": "A", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {BOS: {"id": BOS, "ids": [data.BOS_ID], "tokens": [BOS]}},
        },
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                    "use_regex": False},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": []},
    }


def tokenizer_config():
    return {
        "add_bos_token": True, "add_eos_token": False,
        "bos_token": BOS, "eos_token": EOS, "pad_token": PAD,
        "clean_up_tokenization_spaces": False, "legacy": True,
        "model_max_length": 4096, "tokenizer_class": "PreTrainedTokenizerFast",
        "chat_template": CHAT_TEMPLATE,
    }


def write(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    for name, obj in (("tokenizer.json", tokenizer_json()),
                      ("tokenizer_config.json", tokenizer_config())):
        with open(os.path.join(out_dir, name), "w", encoding="utf-8") as f:
            json.dump(obj, f, ensure_ascii=False, indent=2)
            f.write("\n")
