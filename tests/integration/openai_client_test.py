#!/usr/bin/env python3
"""The official `openai` Python package against mla-server's OpenAI-compatible API.

Run by ctest:

    openai_client_test.py --server BIN --source_dir REPO --work_dir DIR

Phase 1 (any python3): creates a virtual environment in DIR once, installing `openai`
from PyPI. Without PyPI the test is skipped (exit 77, which ctest reports as skipped),
saying why: the C++ tests cover the same API over raw sockets. Phase 2 re-runs this
script inside that environment: it starts mla-server (the demo model, which has a
tokenizer and a chat template) on port 0 with --http_address=127.0.0.1:0 and runs the
unittest cases below: chat and completions, streamed and not, logprobs, stop strings,
seeded sampling, prompt caching, error statuses and bodies, and bearer tokens.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path
from typing import Any, List, Optional

from live_server import LiveServer

REQUIREMENTS = ["openai>=1.30,<3"]
IN_VENV_ENV = "MLA_OPENAI_CLIENT_TEST_IN_VENV"
SKIP = 77
MODEL = "needle-v2-demo"
ARGS: argparse.Namespace


def parse_args(argv: List[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True, help="the mla-server binary")
    parser.add_argument("--source_dir", required=True, help="repository root")
    parser.add_argument("--work_dir", required=True, help="where the venv is cached")
    return parser.parse_known_args(argv)[0]


# ---- Phase 1: the virtual environment --------------------------------------------------

def ensure_venv(work: Path) -> Path:
    """Creates the cached venv (once) and returns its python; exits 77 without PyPI."""
    venv = work / "venv"
    python = venv / "bin" / "python"
    stamp = venv / ".mla-deps"
    if stamp.is_file() and stamp.read_text() == " ".join(REQUIREMENTS):
        return python
    shutil.rmtree(venv, ignore_errors=True)
    made = subprocess.run([sys.executable, "-m", "venv", str(venv)], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    if made.returncode != 0:
        print(f"SKIPPED: python3 -m venv failed (install python3-venv):\n{made.stdout}",
              flush=True)
        sys.exit(SKIP)
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q",
         "--timeout", "30", *REQUIREMENTS],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        shutil.rmtree(venv, ignore_errors=True)
        print("SKIPPED: could not install the openai package from PyPI (no network, or set "
              f"PIP_INDEX_URL); openai_http_integration_test covers the API.\n{result.stdout}",
              flush=True)
        sys.exit(SKIP)
    stamp.write_text(" ".join(REQUIREMENTS))
    return python


def phase_one(argv: List[str]) -> None:
    args = parse_args(argv)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    with open(work / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # Concurrent ctest runs share the venv.
        python = ensure_venv(work)
    env = dict(os.environ, **{IN_VENV_ENV: "1"})
    os.execve(str(python), [str(python), os.path.abspath(__file__), *argv], env)


# ---- Phase 2: the tests ------------------------------------------------------------------

class Server(LiveServer):
    """mla-server with the HTTP API on 127.0.0.1:0 (the demo model)."""

    def __init__(self, extra: Optional[List[str]] = None) -> None:
        model = os.path.join(ARGS.source_dir, "models", MODEL)
        super().__init__(ARGS.server,
                         [f"--model_dir={model}", "--device=cpu", "--kv_cache_mib=16",
                          "--threads=2", "--metrics_address=", "--listen=127.0.0.1:0",
                          "--http_address=127.0.0.1:0", *(extra or [])],
                         ["--port_file", "--http_port_file"])
        self.url = f"http://127.0.0.1:{self.ports['--http_port_file']}/v1"


def wait_ready(client: Any) -> None:
    import openai
    deadline = time.monotonic() + 60
    while True:
        try:
            client.models.list()
            return
        except openai.APIStatusError as error:  # 503 while the model loads.
            if error.status_code != 503 or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# The demo model's own format (docs/LONG_CONTEXT.md): the question follows a newline.
PROMPT = "The pass key is 12345. Remember it. 12345 is the pass key.\n" \
         "What is the pass key? The pass key is "


class OpenAiClientTest(unittest.TestCase):
    server: Server

    @classmethod
    def setUpClass(cls) -> None:
        import openai
        cls.server = Server()
        # max_retries=0: a refused request must show, not be retried away.
        cls.client = openai.OpenAI(base_url=cls.server.url, api_key="unused", max_retries=0,
                                   timeout=60)
        wait_ready(cls.client)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.client.close()
        log = cls.server.log()
        code = cls.server.stop()
        if code != 0:
            raise RuntimeError(f"mla-server exited {code} after SIGTERM:\n{log}")

    def test_models(self) -> None:
        models = self.client.models.list()
        self.assertEqual([m.id for m in models.data], [MODEL])
        self.assertEqual(models.data[0].model_extra.get("max_model_len"), 8192)

    def test_completion_streamed_equals_whole(self) -> None:
        whole = self.client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=10,
                                               temperature=0, extra_body={"ignore_eos": True})
        self.assertEqual(whole.object, "text_completion")
        self.assertEqual(whole.choices[0].finish_reason, "length")
        self.assertEqual(whole.usage.completion_tokens, 10)
        self.assertEqual(whole.usage.total_tokens, whole.usage.prompt_tokens + 10)
        self.assertTrue(whole.choices[0].text.startswith("12345"), whole.choices[0].text)
        chunks = list(self.client.completions.create(
            model=MODEL, prompt=PROMPT, max_tokens=10, temperature=0, stream=True,
            stream_options={"include_usage": True}, extra_body={"ignore_eos": True}))
        self.assertGreater(len(chunks), 2, "not streamed")
        text = "".join(c.choices[0].text for c in chunks if c.choices)
        self.assertEqual(text, whole.choices[0].text)
        self.assertEqual([c.choices[0].finish_reason for c in chunks if c.choices][-1],
                         "length")
        self.assertEqual(chunks[-1].choices, [])
        self.assertEqual(chunks[-1].usage.completion_tokens, 10)

    def test_token_id_prompt_and_echoed_logprobs(self) -> None:
        import httpx
        root = self.server.url[:-len("/v1")]
        ids = httpx.post(f"{root}/tokenize", json={"prompt": "abc"}).json()["tokens"]
        self.assertEqual(ids, [256, 97, 98, 99])  # BOS + one id per byte.
        scored = self.client.completions.create(model=MODEL, prompt=ids,
                                                max_tokens=1, temperature=0, echo=True,
                                                logprobs=2)
        choice = scored.choices[0]
        self.assertTrue(choice.text.startswith("abc"))
        lp = choice.logprobs
        self.assertEqual(lp.tokens[1:4], ["a", "b", "c"])
        self.assertIsNone(lp.token_logprobs[0])  # The first token has no context.
        self.assertTrue(all(x <= 0 for x in lp.token_logprobs[1:]))
        self.assertEqual(lp.text_offset[:4], [0, 0, 1, 2])
        self.assertLessEqual(len(lp.top_logprobs[1]), 3)  # 2 alternatives + the token.
        self.assertIn("a", lp.top_logprobs[1])

    def test_chat_streamed_and_whole_with_logprobs(self) -> None:
        messages = [{"role": "user", "content": PROMPT}]
        whole = self.client.chat.completions.create(model=MODEL, messages=messages,
                                                    max_tokens=6, temperature=0, logprobs=True,
                                                    top_logprobs=2)
        self.assertEqual(whole.object, "chat.completion")
        message = whole.choices[0].message
        self.assertEqual(message.role, "assistant")
        content = whole.choices[0].logprobs.content
        self.assertEqual("".join(t.token for t in content), message.content)
        self.assertTrue(all(len(t.top_logprobs) == 2 for t in content))
        self.assertEqual(content[0].bytes, list(content[0].token.encode()))
        stream = self.client.chat.completions.create(
            model=MODEL, messages=messages, max_tokens=6, temperature=0, stream=True,
            stream_options={"include_usage": True})
        chunks = list(stream)
        self.assertEqual(chunks[0].choices[0].delta.role, "assistant")
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        self.assertEqual(text, message.content)
        self.assertEqual(chunks[-1].usage.completion_tokens, whole.usage.completion_tokens)

    def test_stop_strings(self) -> None:
        free = self.client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=12,
                                              temperature=0, extra_body={"ignore_eos": True})
        text = free.choices[0].text
        self.assertGreaterEqual(len(text), 4, text)
        stop = text[2:4]  # Cut inside the greedy output.
        cut = self.client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=12,
                                             temperature=0, stop=[stop, "never"],
                                             extra_body={"ignore_eos": True})
        self.assertEqual(cut.choices[0].text, text[:text.index(stop)])
        self.assertEqual(cut.choices[0].finish_reason, "stop")
        self.assertLess(cut.usage.completion_tokens, 12)
        streamed = "".join(c.choices[0].text for c in self.client.completions.create(
            model=MODEL, prompt=PROMPT, max_tokens=12, temperature=0, stop=stop, stream=True,
            extra_body={"ignore_eos": True}))
        self.assertEqual(streamed, cut.choices[0].text)

    def test_seed_reproduces_sampling(self) -> None:
        def sample(seed: int) -> str:
            return self.client.completions.create(
                model=MODEL, prompt="The value of key ", max_tokens=24, temperature=1.5,
                seed=seed, extra_body={"ignore_eos": True, "top_k": 50}).choices[0].text
        first = sample(7)
        self.assertEqual(sample(7), first)
        self.assertTrue(any(sample(s) != first for s in (8, 9, 10)), "the seed is ignored")

    def test_several_choices_and_penalties(self) -> None:
        whole = self.client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": PROMPT}], max_tokens=8,
            temperature=1.2, seed=5, n=3, presence_penalty=0.5, frequency_penalty=0.5,
            logit_bias={"120": -100}, extra_body={"ignore_eos": True})
        self.assertEqual([c.index for c in whole.choices], [0, 1, 2])
        self.assertEqual(whole.usage.completion_tokens, 24)
        texts = [c.message.content for c in whole.choices]
        self.assertTrue(all("x" not in t for t in texts), texts)  # 120 is "x": banned.
        chunks = list(self.client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": PROMPT}], max_tokens=8,
            temperature=1.2, seed=5, n=3, presence_penalty=0.5, frequency_penalty=0.5,
            logit_bias={"120": -100}, stream=True, extra_body={"ignore_eos": True}))
        streamed = ["", "", ""]
        for chunk in chunks:
            for choice in chunk.choices:
                streamed[choice.index] += choice.delta.content or ""
        self.assertEqual(streamed, texts)

    def test_repeated_prompt_reports_cached_tokens(self) -> None:
        prompt = "x" * 200 + PROMPT  # Over three 64-token blocks.
        self.client.completions.create(model=MODEL, prompt=prompt, max_tokens=1)
        again = self.client.completions.create(model=MODEL, prompt=prompt, max_tokens=1)
        self.assertGreaterEqual(again.usage.prompt_tokens_details.cached_tokens, 192)

    def test_errors_have_openai_statuses_and_bodies(self) -> None:
        import openai
        with self.assertRaises(openai.NotFoundError) as ctx:
            self.client.completions.create(model="gpt-4", prompt="x")
        self.assertEqual(ctx.exception.code, "model_not_found")
        cases = [({"temperature": 3}, "temperature"), ({"n": 17}, "n"),
                 ({"top_p": 0}, "top_p"), ({"presence_penalty": 3.0}, "presence_penalty"),
                 ({"extra_body": {"frobnicate": 1}}, "frobnicate"),
                 ({"max_tokens": 9000}, "prompt")]
        for kwargs, param in cases:
            with self.assertRaises(openai.BadRequestError, msg=str(kwargs)) as ctx:
                self.client.completions.create(model=MODEL, prompt="x", **kwargs)
            self.assertEqual(ctx.exception.status_code, 400)
            self.assertEqual(ctx.exception.param, param, ctx.exception.message)
            self.assertEqual(ctx.exception.type, "invalid_request_error")
        with self.assertRaises(openai.BadRequestError) as ctx:
            self.client.chat.completions.create(model=MODEL, messages=[])
        self.assertEqual(ctx.exception.param, "messages")
        import httpx
        raw = httpx.post(f"{self.server.url}/completions", content=b"{not json",
                         headers={"Content-Type": "application/json"})
        self.assertEqual(raw.status_code, 400)
        self.assertIn("not valid JSON", raw.json()["error"]["message"])


class OpenAiAuthTest(unittest.TestCase):
    def test_bearer_tokens(self) -> None:
        import openai
        tokens = Path(tempfile.mkdtemp(prefix="mla-openai-tokens-")) / "tokens"
        tokens.write_text("# clients\nsecret-token\n")
        server = Server([f"--auth_tokens_file={tokens}"])
        try:
            good = openai.OpenAI(base_url=server.url, api_key="secret-token", max_retries=0)
            wait_ready(good)
            reply = good.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2)
            self.assertLessEqual(reply.usage.completion_tokens, 2)
            self.assertEqual(reply.choices[0].message.role, "assistant")
            bad = openai.OpenAI(base_url=server.url, api_key="wrong", max_retries=0)
            with self.assertRaises(openai.AuthenticationError) as ctx:
                bad.models.list()
            self.assertEqual(ctx.exception.status_code, 401)
            self.assertEqual(ctx.exception.code, "invalid_api_key")
        finally:
            log = server.log()
            self.assertEqual(server.stop(), 0, log)
            shutil.rmtree(tokens.parent, ignore_errors=True)


def main() -> None:
    global ARGS
    if os.environ.get(IN_VENV_ENV) != "1":
        phase_one(sys.argv[1:])  # Does not return.
    ARGS = parse_args(sys.argv[1:])
    import openai
    print(f"openai {openai.__version__}", flush=True)
    unittest.main(argv=[sys.argv[0], "-v"])


if __name__ == "__main__":
    main()
