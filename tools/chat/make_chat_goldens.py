#!/usr/bin/env python3
"""Writes tests/data/chat/goldens.json: chat templates rendered by Python jinja2 exactly as
transformers' apply_chat_template renders them, the reference engine/chat must match byte for
byte.

The environment copies transformers' _compile_jinja_template (utils/chat_template_utils.py):
ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True) with the loopcontrols
extension, a tojson filter calling json.dumps(ensure_ascii=False), and the raise_exception and
namespace globals. render() receives messages, tools=None, documents=None,
add_generation_prompt and the bos/eos tokens, as apply_chat_template passes them.

Every template in tests/data/chat/templates/ is rendered over the same conversations, with and
without add_generation_prompt. A case whose render raises records the error message instead.

Usage (the pinned version is in requirements.txt):
  python3 -m venv tools/chat/.venv
  tools/chat/.venv/bin/pip install -r tools/chat/requirements.txt
  tools/chat/.venv/bin/python tools/chat/make_chat_goldens.py
"""

import json
from pathlib import Path

import jinja2
import jinja2.ext
import jinja2.utils
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "chat"
TEMPLATES = DATA / "templates"

DEEPSEEK_TOKENS = ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>")
TOKENS = {
    "deepseek_v2": DEEPSEEK_TOKENS,
    "deepseek_v3": DEEPSEEK_TOKENS,
    "synthetic_alternating": ("<s>", "</s>"),
    "synthetic_features": ("<s>", "</s>"),
}


def make_environment():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["namespace"] = jinja2.utils.Namespace
    return env


def msg(role, content):
    return {"role": role, "content": content}


CONVERSATIONS = {
    "system_user": [msg("system", "You are a helpful assistant."), msg("user", "Hello!")],
    "user_only": [msg("user", "What is 2+2?")],
    "multi_turn": [
        msg("system", "Be brief."),
        msg("user", "Hi"),
        msg("assistant", "Hello! How can I help?"),
        msg("user", "Tell me a joke."),
    ],
    "assistant_last": [msg("user", "Say hi"), msg("assistant", "Hi there")],
    "no_system_multi": [
        msg("user", "one"), msg("assistant", "two"), msg("user", "three"),
        msg("assistant", "four"),
    ],
    "empty_content": [msg("system", ""), msg("user", ""), msg("assistant", "")],
    "unicode": [
        msg("system", "你是一个乐于助人的助手。"),
        msg("user", "こんにちは 👋🏽 café naïve Ωmega — “quotes” ‘single’ 😀"),
        msg("assistant", "안녕하세요! 🎉\u00a0nbsp\u3000ideographic space"),
        msg("user", "emoji only: 🤖🧠🔥"),
    ],
    "jinja_lookalike": [
        msg("system", "{{ x }} {% if true %}yes{% endif %} {# comment #}"),
        msg("user", "<think>reasoning</think> answer <｜User｜> <｜Assistant｜> {{ bos_token }}"),
        msg("assistant", "{%- raw -%} '\\n' \"quotes\" \\ backslash"),
        msg("user", "ends with question?"),
    ],
    "whitespace": [
        msg("system", "  leading and trailing  \n"),
        msg("user", "\n\nline one\r\nline two\n\n"),
        msg("assistant", "\ttabbed\t"),
        msg("user", " "),
    ],
    "two_systems": [msg("system", "First rule."), msg("system", "Second rule."),
                    msg("user", "Go")],
    "system_middle": [msg("user", "a"), msg("system", "late system"), msg("user", "b")],
    "tool_outputs": [
        msg("user", "What is the weather?"),
        msg("tool", "{\"temp\": 21}"),
        msg("tool", "sunny"),
        msg("assistant", "It is 21 degrees and sunny."),
        msg("user", "Thanks"),
        msg("tool", "trailing tool output"),
    ],
    "unknown_role": [msg("developer", "dev note"), msg("user", "hi")],
    "user_user": [msg("user", "first"), msg("user", "second")],
    "empty": [],
}


def render(env, source, messages, add_generation_prompt, bos, eos):
    template = env.from_string(source)
    return template.render(messages=messages, tools=None, documents=None,
                           add_generation_prompt=add_generation_prompt, bos_token=bos,
                           eos_token=eos)


def main():
    env = make_environment()
    cases = []
    for path in sorted(TEMPLATES.glob("*.jinja")):
        name = path.stem
        source = path.read_text(encoding="utf-8")
        bos, eos = TOKENS[name]
        for conv_name, messages in CONVERSATIONS.items():
            for add_generation_prompt in (False, True):
                case = {
                    "template": name,
                    "conversation": conv_name,
                    "messages": messages,
                    "add_generation_prompt": add_generation_prompt,
                    "bos_token": bos,
                    "eos_token": eos,
                }
                try:
                    case["expected"] = render(env, source, messages, add_generation_prompt,
                                              bos, eos)
                except jinja2.exceptions.TemplateError as e:
                    case["error"] = str(e)
                cases.append(case)
    out = {
        "generator": "tools/chat/make_chat_goldens.py",
        "jinja2_version": jinja2.__version__,
        "cases": cases,
    }
    (DATA / "goldens.json").write_text(
        json.dumps(out, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    errors = sum("error" in c for c in cases)
    print(f"wrote {len(cases)} cases ({errors} expected errors) to {DATA / 'goldens.json'}")


if __name__ == "__main__":
    main()
