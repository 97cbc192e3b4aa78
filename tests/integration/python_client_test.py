#!/usr/bin/env python3
"""The Python client (client/python) against a live mla-server over a real socket.

Run by ctest:

    python_client_test.py --server BIN --source_dir REPO --work_dir DIR

Phase 1 (any python3): creates a virtual environment in DIR once, installing grpcio and
grpcio-tools from PyPI, then (re)installs the mla_client package whenever its sources
or the .proto files change. Without PyPI the test fails, saying so. Phase 2 re-runs
this script inside that environment: it starts mla-server on port 0 with --port_file
and runs the unittest cases below.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import threading
import time
import unittest
from pathlib import Path
from typing import Any, Callable, List, Optional

from live_server import LiveServer

REQUIREMENTS = ["grpcio>=1.62", "grpcio-tools>=1.62", "setuptools>=64"]
IN_VENV_ENV = "MLA_PYTHON_CLIENT_TEST_IN_VENV"
ARGS: argparse.Namespace


def parse_args(argv: List[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True, help="the mla-server binary")
    parser.add_argument("--source_dir", required=True, help="repository root")
    parser.add_argument("--work_dir", required=True, help="where the venv is cached")
    parser.add_argument("--model", default="", help="model dir (default models/tiny-v2-lite)")
    return parser.parse_known_args(argv)[0]


# ---- Phase 1: the virtual environment --------------------------------------------------

def fail(message: str) -> None:
    print(f"FAILED: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def run_logged(cmd: List[str], what: str, **kwargs: Any) -> None:
    result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            **kwargs)
    if result.returncode != 0:
        fail(f"{what} failed (exit {result.returncode}):\n{result.stdout}")


def package_fingerprint(source: Path) -> str:
    """Hash of every input of the package build: its sources and the .proto files."""
    digest = hashlib.sha256()
    roots = [source / "client" / "python", source / "proto"]
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            rel = path.relative_to(root)
            if rel.parts[0] in ("build", "dist") or "__pycache__" in rel.parts or \
                    any(part.endswith(".egg-info") for part in rel.parts) or "_pb2" in path.name:
                continue
            digest.update(str(rel).encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(" ".join(REQUIREMENTS).encode())
    return digest.hexdigest()


def ensure_venv(source: Path, work: Path) -> Path:
    """Creates or refreshes the cached venv and returns its python."""
    venv = work / "venv"
    python = venv / "bin" / "python"
    deps_stamp = venv / ".mla-deps"
    if not deps_stamp.is_file() or deps_stamp.read_text() != " ".join(REQUIREMENTS):
        shutil.rmtree(venv, ignore_errors=True)
        run_logged([sys.executable, "-m", "venv", str(venv)], "creating a venv (python3 -m venv)")
        cmd = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q",
               "--timeout", "30", *REQUIREMENTS]
        result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if result.returncode != 0:
            fail("could not install grpcio/grpcio-tools from PyPI; this test needs PyPI "
                 f"(or a pip index configured through PIP_INDEX_URL).\n{result.stdout}")
        deps_stamp.write_text(" ".join(REQUIREMENTS))
    package_stamp = venv / ".mla-client"
    fingerprint = package_fingerprint(source)
    if not package_stamp.is_file() or package_stamp.read_text() != fingerprint:
        # Built from a copy, so that the build leaves nothing in the source tree.
        copy = work / "package"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(source / "client" / "python", copy, ignore=shutil.ignore_patterns(
            "build", "dist", "*.egg-info", "__pycache__", "*_pb2*"))
        env = dict(os.environ, MLA_PROTO_DIR=str(source / "proto"))
        run_logged([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q",
                    "--no-index", "--no-deps", "--no-build-isolation", "--force-reinstall",
                    str(copy)], "installing client/python", env=env)
        package_stamp.write_text(fingerprint)
    return python


def phase_one(argv: List[str]) -> None:
    args = parse_args(argv)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    with open(work / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # Concurrent ctest runs share the venv.
        python = ensure_venv(Path(args.source_dir).resolve(), work)
    env = dict(os.environ, **{IN_VENV_ENV: "1"})
    os.execve(str(python), [str(python), os.path.abspath(__file__), *argv], env)


# ---- Phase 2: the tests ------------------------------------------------------------------

class Server(LiveServer):
    """mla-server on 127.0.0.1:0 (gRPC only)."""

    def __init__(self, binary: str, model: str) -> None:
        super().__init__(binary, [f"--model_dir={model}", "--device=cpu", "--kv_cache_mib=16",
                                  "--threads=2", "--metrics_address=", "--listen=127.0.0.1:0"],
                         ["--port_file"])
        self.target = f"127.0.0.1:{self.ports['--port_file']}"


def poll(predicate: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


class PythonClientTest(unittest.TestCase):
    server: Server

    @classmethod
    def setUpClass(cls) -> None:
        from mla_client import Client, HealthStatus, MlaError
        model = ARGS.model or os.path.join(ARGS.source_dir, "models", "tiny-v2-lite")
        cls.server = Server(ARGS.server, model)
        cls.client = Client(cls.server.target, timeout=30)

        def serving() -> bool:
            try:
                return cls.client.health() == HealthStatus.SERVING
            except MlaError:
                return False
        if not poll(serving, 60):
            raise RuntimeError(f"mla-server never became SERVING:\n{cls.server.log()}")

    @classmethod
    def tearDownClass(cls) -> None:
        cls.client.close()
        log = cls.server.log()
        code = cls.server.stop()
        if code != 0:
            raise RuntimeError(f"mla-server exited {code} after SIGTERM:\n{log}")

    def assert_idle(self) -> None:
        """Running, waiting and used cache blocks all return to zero (polled)."""
        self.assertTrue(poll(lambda: self.idle(self.client.load())),
                        f"server not idle: {self.client.load()}")

    @staticmethod
    def idle(load: Any) -> bool:
        return (load.kv_blocks_used == 0 and load.num_requests_running == 0
                and load.num_requests_waiting == 0)

    def test_generate_streams_tokens_until_length(self) -> None:
        from mla_client import FinishReason, GenerateChunk
        stream = self.client.generate([5, 6, 7, 8], max_tokens=12, ignore_eos=True, logprobs=2)
        chunks: List[GenerateChunk] = list(stream)
        tokens = [t for c in chunks for t in c.token_ids]
        self.assertEqual(len(tokens), 12)
        self.assertGreater(len(chunks), 1, "tokens were not streamed")
        self.assertTrue(all(0 <= t < 512 for t in tokens))
        for chunk in chunks:
            self.assertEqual(len(chunk.logprobs), len(chunk.token_ids))
            self.assertEqual([p.token_id for p in chunk.logprobs], chunk.token_ids)
            self.assertTrue(all(len(p.top_token_ids) == 2 for p in chunk.logprobs))
        self.assertTrue(all(c.finished is None for c in chunks[:-1]))
        finished = chunks[-1].finished
        self.assertIsNotNone(finished)
        self.assertEqual(stream.finished, finished)
        self.assertEqual(finished.reason, FinishReason.LENGTH)
        self.assertEqual(finished.usage.prompt_tokens, 4)
        self.assertEqual(finished.usage.completion_tokens, 12)
        self.assertGreater(finished.timings.total_seconds, 0)
        self.assertTrue(stream.request_id)
        # Greedy decoding is deterministic.
        again = [t for c in self.client.generate([5, 6, 7, 8], max_tokens=12, ignore_eos=True)
                 for t in c.token_ids]
        self.assertEqual(again, tokens)
        self.assert_idle()

    def test_seeded_sampling_repeats(self) -> None:
        def sample(seed: int) -> List[int]:
            return [t for c in self.client.generate([9, 10], max_tokens=16, temperature=1.5,
                                                     top_k=50, seed=seed, ignore_eos=True)
                    for t in c.token_ids]
        first = sample(7)
        self.assertEqual(len(first), 16)
        self.assertEqual(sample(7), first)

    def test_logit_bias_and_penalties_reach_the_server(self) -> None:
        from mla_client import MlaError
        forced = [t for c in self.client.generate([9, 10], max_tokens=5, ignore_eos=True,
                                                  logit_bias={33: 100.0})
                  for t in c.token_ids]
        self.assertEqual(forced, [33] * 5)
        # A repetition penalty of 1e4 takes the biased token's win away once it is used.
        once = [t for c in self.client.generate([9, 10], max_tokens=5, ignore_eos=True,
                                                logit_bias={33: 100.0}, repetition_penalty=1e4)
                for t in c.token_ids]
        self.assertEqual(once[0], 33)
        self.assertNotIn(33, once[1:])
        with self.assertRaises(MlaError) as ctx:
            list(self.client.generate([9, 10], max_tokens=2, presence_penalty=3.0))
        self.assertIn("presence_penalty", str(ctx.exception))
        self.assert_idle()

    def test_breaking_out_cancels_the_request(self) -> None:
        received = 0
        for chunk in self.client.generate([1, 2, 3], max_tokens=20000, ignore_eos=True):
            received += len(chunk.token_ids)
            if received >= 3:
                # Live now: the break below is what must free it.
                load = self.client.load()
                self.assertEqual(load.num_requests_running, 1)
                self.assertGreater(load.kv_blocks_used, 0)
                break
        self.assert_idle()

    def test_close_cancels_and_ends_iteration(self) -> None:
        stream = self.client.generate([4, 5], max_tokens=20000, ignore_eos=True)
        self.assertIsNone(next(stream).finished)
        stream.close()
        self.assertEqual(list(stream), [])
        self.assertIsNone(stream.finished)
        self.assert_idle()

    def test_abort_from_a_second_client(self) -> None:
        import grpc
        from mla_client import Client, FinishReason, MlaError
        aborted = threading.Event()
        errors: List[BaseException] = []

        def abort() -> None:
            try:
                with Client(self.server.target, timeout=10) as other:
                    other.abort("py-long-one")
            except BaseException as error:  # noqa: BLE001 - reported by the main thread.
                errors.append(error)
            aborted.set()

        stream = self.client.generate([1, 2, 3], max_tokens=20000, ignore_eos=True,
                                      request_id="py-long-one")
        tokens = 0
        aborter: Optional[threading.Thread] = None
        for chunk in stream:
            self.assertEqual(chunk.request_id, "py-long-one")
            tokens += len(chunk.token_ids)
            if aborter is None:
                aborter = threading.Thread(target=abort, daemon=True)
                aborter.start()
        self.assertTrue(aborted.wait(10))
        self.assertEqual(errors, [])
        self.assertIsNotNone(stream.finished)
        self.assertEqual(stream.finished.reason, FinishReason.ABORT)
        self.assertLess(tokens, 20000)
        self.assertEqual(stream.finished.usage.completion_tokens, tokens)
        with self.assertRaises(MlaError) as ctx:
            self.client.abort("py-long-one")
        self.assertEqual(ctx.exception.code, grpc.StatusCode.NOT_FOUND)
        self.assert_idle()

    def test_model_info(self) -> None:
        info = self.client.model_info()
        self.assertEqual(info.model_name, "tiny-v2-lite")
        self.assertEqual(info.architecture, "DeepseekV2ForCausalLM")
        self.assertEqual(info.vocab_size, 512)
        self.assertEqual(info.num_hidden_layers, 3)
        self.assertEqual(info.kv_lora_rank, 32)
        self.assertEqual(info.q_lora_rank, 0)
        self.assertEqual(info.device, "cpu")
        self.assertEqual(info.kv_block_size, 64)
        self.assertGreater(info.kv_num_blocks, 0)
        self.assertEqual(info.kv_bytes_per_token, 3 * (32 + 8) * 2)
        self.assertFalse(info.has_tokenizer)
        self.assertFalse(info.has_chat_template)

    def test_load_and_health(self) -> None:
        from mla_client import HealthStatus
        load = self.client.load()
        info = self.client.model_info()
        self.assertEqual(load.kv_blocks_total, info.kv_num_blocks)
        self.assertEqual(load.kv_blocks_used + load.kv_blocks_free + load.kv_blocks_cached_free,
                         load.kv_blocks_total)
        self.assertEqual(load.kv_bytes_total,
                         load.kv_blocks_total * info.kv_block_size * info.kv_bytes_per_token)
        self.assertEqual(self.client.health(), HealthStatus.SERVING)

    def test_errors_carry_code_and_message(self) -> None:
        import grpc
        from mla_client import MlaError
        with self.assertRaises(MlaError) as ctx:
            list(self.client.generate([1, 100000], max_tokens=4))
        self.assertEqual(ctx.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("token_ids.ids[1]", ctx.exception.message)
        self.assertIn("INVALID_ARGUMENT", str(ctx.exception))
        with self.assertRaises(MlaError) as ctx:
            list(self.client.generate(text="hello", max_tokens=4))
        self.assertEqual(ctx.exception.code, grpc.StatusCode.FAILED_PRECONDITION)
        for call in (lambda: self.client.tokenize("hello"),
                     lambda: self.client.detokenize([1, 2])):
            with self.assertRaises(MlaError) as ctx:
                call()
            self.assertEqual(ctx.exception.code, grpc.StatusCode.FAILED_PRECONDITION)
        with self.assertRaises(ValueError):
            self.client.generate([1], text="both")

    def test_deadline_exceeded(self) -> None:
        import grpc
        from mla_client import MlaError
        with self.assertRaises(MlaError) as ctx:
            for _ in self.client.generate([1, 2], max_tokens=20000, ignore_eos=True,
                                          timeout=0.5):
                pass
        self.assertEqual(ctx.exception.code, grpc.StatusCode.DEADLINE_EXCEEDED)
        self.assert_idle()

    def test_unreachable_server_is_unavailable(self) -> None:
        import grpc
        from mla_client import Client, MlaError
        with Client("127.0.0.1:1", timeout=5) as nobody:
            with self.assertRaises(MlaError) as ctx:
                nobody.load()
        self.assertEqual(ctx.exception.code, grpc.StatusCode.UNAVAILABLE)

    def test_example_script(self) -> None:
        script = os.path.join(ARGS.source_dir, "client", "python", "examples", "generate.py")
        result = subprocess.run(
            [sys.executable, script, "--target", self.server.target, "--prompt_ids", "1,2,3",
             "--max_tokens", "5"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            timeout=60)
        self.assertEqual(result.returncode, 0, result.stdout)
        self.assertIn("model tiny-v2-lite", result.stdout)
        self.assertIn("finished: length, 5 tokens", result.stdout)


def main() -> None:
    global ARGS
    if os.environ.get(IN_VENV_ENV) != "1":
        phase_one(sys.argv[1:])  # Does not return.
    ARGS = parse_args(sys.argv[1:])
    import mla_client
    print(f"mla_client from {os.path.dirname(mla_client.__file__)}", flush=True)
    unittest.main(argv=[sys.argv[0], "-v"])


if __name__ == "__main__":
    main()
