#!/usr/bin/env python3
"""Streams one generation from mla-server and prints the tokens as they arrive.

    python examples/generate.py --target 127.0.0.1:50051 --prompt_ids 1,2,3 --max_tokens 16
    python examples/generate.py --text "Hello" --temperature 0.7 --seed 1   # needs a tokenizer
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from mla_client import Client, MlaError


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="127.0.0.1:50051", help="server host:port")
    prompt = parser.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--prompt_ids", help="comma-separated token ids")
    prompt.add_argument("--text", help="prompt text (the model needs a tokenizer)")
    parser.add_argument("--max_tokens", type=int, default=16)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--top_p", type=float, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=None, help="deadline in seconds")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    prompt_ids = [int(t) for t in args.prompt_ids.split(",")] if args.prompt_ids else None
    with Client(args.target, timeout=args.timeout) as client:
        info = client.model_info()
        print(f"model {info.model_name} ({info.architecture}) on {info.device}")
        try:
            stream = client.generate(prompt_ids, text=args.text, max_tokens=args.max_tokens,
                                     temperature=args.temperature, top_p=args.top_p,
                                     seed=args.seed)
            for chunk in stream:
                print(chunk.text if chunk.text else " ".join(map(str, chunk.token_ids)),
                      flush=True)
        except MlaError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        finished = stream.finished
        if finished is not None:
            print(f"finished: {finished.reason.value}, {finished.usage.completion_tokens} tokens "
                  f"in {finished.timings.total_seconds:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
