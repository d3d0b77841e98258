"""Teacher sampling throughput against a local llama.cpp server, by client concurrency.

    .venv/bin/python bench/sampling_throughput.py --questions 8 --concurrency 1,2,4,8

Starts the embedded SmolLM2-135M-Instruct GGUF under llama.cpp's server (cotspec.teacher.server), then
samples zero-shot chain-of-thought for GSM8K training questions through OpenAIBackend at each client
concurrency, with and without top-k logprobs (the paper keeps the top 5). Every level uses the same
per-request seeds, so it generates the very same tokens: tokens/s differ only by how requests are
served. Prints generated tokens/s and the ratio to sequential sampling (concurrency 1) in this process.

``--fleet K`` adds a row for K servers with one thread each behind the same backend, the way to use
more cores with llama-cpp-python's server (it serves one request at a time, with no parallel slots).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from dataclasses import replace
from pathlib import Path

from cotspec.backends.base import SamplingParams
from cotspec.backends.openai_backend import OpenAIBackend
from cotspec.tasks.datadir import read_jsonl, require_file, resolve_data_dir
from cotspec.teacher.server import start_llama_server


def gsm8k_prompts(data_dir: str | None, count: int) -> list[str]:
    path = require_file(resolve_data_dir(data_dir), "gsm8k/train.jsonl")
    prompts = []
    for _, record in read_jsonl(path):
        prompts.append("Q: " + record["question"] + "\nLet's think step by step\n")
        if len(prompts) == count:
            break
    return prompts


def measure(urls: list[str], model: str, prompts: list[str], params: SamplingParams, concurrency: int) -> tuple[int, float]:
    """(generated tokens, seconds) for sampling every prompt once."""
    backend = OpenAIBackend.from_options(urls, model=model, concurrency=concurrency)
    started = time.perf_counter()
    tokens = sum(c.completion_tokens for _, cs in backend.generate(prompts, params) for c in cs)
    return tokens, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    parser.add_argument("--data-dir", default=os.environ.get("COTSPEC_DATA_DIR", shared),
                        help="benchmark data folder (default: $COTSPEC_DATA_DIR, else ../shared/data)")
    parser.add_argument("--questions", type=int, default=8, help="GSM8K training questions sampled per level")
    parser.add_argument("--concurrency", default="1,2,4,8", help="comma-separated client concurrency levels")
    parser.add_argument("--max-tokens", type=int, default=128, help="generated tokens per sample, at most")
    parser.add_argument("--temperature", type=float, default=0.5, help="sampling temperature (paper: 0.5)")
    parser.add_argument("--top-logprobs", default="0",
                        help="comma-separated top-k logprob settings to run (0: none; the paper keeps 5)")
    parser.add_argument("--threads", type=int, default=None, help="server CPU threads (default: half the cores)")
    parser.add_argument("--fleet", type=int, default=0, help="also run K one-thread servers as a fleet (0: skip)")
    args = parser.parse_args()

    prompts = gsm8k_prompts(args.data_dir, args.questions)
    levels = [int(c) for c in args.concurrency.split(",")]
    base = SamplingParams(max_new_tokens=args.max_tokens, temperature=args.temperature, seed=1234)
    print(f"{len(prompts)} GSM8K questions, max_tokens {args.max_tokens}, temperature {args.temperature}")
    print(f"{'server':<22} {'top-k':>5} {'conc':>4} {'tokens':>7} {'seconds':>8} {'tok/s':>7} {'vs c=1':>7}")

    with start_llama_server(n_ctx=1024, n_threads=args.threads) as server:
        measure([server.base_url], server.model_name, prompts[:1], replace(base, max_new_tokens=8), 1)  # warm-up
        label = f"1 x {args.threads or 'default'} threads"
        for k in (int(v) for v in args.top_logprobs.split(",")):
            params = replace(base, top_logprobs=k)
            sequential = None
            for concurrency in levels:
                tokens, seconds = measure([server.base_url], server.model_name, prompts, params, concurrency)
                rate = tokens / seconds
                sequential = sequential or rate
                print(f"{label:<22} {k:>5} {concurrency:>4} {tokens:>7} {seconds:>8.1f} {rate:>7.1f} {rate / sequential:>7.2f}")

    if args.fleet:
        with contextlib.ExitStack() as stack:
            fleet = [stack.enter_context(start_llama_server(n_ctx=1024, n_threads=1)) for _ in range(args.fleet)]
            urls = [s.base_url for s in fleet]
            label = f"{args.fleet} x 1 thread"
            for k in (int(v) for v in args.top_logprobs.split(",")):
                params = replace(base, top_logprobs=k)
                tokens1, seconds1 = measure(urls[:1], fleet[0].model_name, prompts, params, 1)
                tokens, seconds = measure(urls, fleet[0].model_name, prompts, params, args.fleet)
                print(f"{'1 x 1 thread':<22} {k:>5} {1:>4} {tokens1:>7} {seconds1:>8.1f} {tokens1 / seconds1:>7.1f} {1.0:>7.2f}")
                print(f"{label:<22} {k:>5} {args.fleet:>4} {tokens:>7} {seconds:>8.1f} {tokens / seconds:>7.1f} "
                      f"{(tokens / seconds) / (tokens1 / seconds1):>7.2f}")


if __name__ == "__main__":
    main()
