"""Teacher sampling throughput of the two local servers, by client concurrency.

    .venv/bin/python bench/sampling_throughput.py --questions 8 --concurrency 1,2,4,8 --top-logprobs 5

Starts the embedded SmolLM2-135M-Instruct GGUF under each server engine of cotspec.teacher.server
(llama.cpp's C++ llama-server with as many slots as the highest concurrency, and llama-cpp-python's
server), both up at once, then samples zero-shot chain-of-thought for GSM8K training questions through
OpenAIBackend at each client concurrency, with top-k logprobs (the paper keeps the top 5). Levels run
in turn on both servers, one after the other, so machine load falls on both alike. Every level sends
the same per-request seeds, yet token counts differ a little between levels and servers (the servers'
samplers differ, and prompt caching and batching change floating-point sums enough to flip a near-tie
now and then): tokens/s is what compares. Prints generated tokens/s per server and concurrency, the ratio to
sequential sampling (concurrency 1) on that server, and the ratio llama-server / llama-cpp-python at
each one's best concurrency, with this machine's CPU model and whether it has AMX.

``--fleet K`` adds a row for K llama-cpp-python servers with one thread each behind the same backend,
the older way to use more cores with that server (it serves one request at a time).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from dataclasses import replace
from pathlib import Path

from cpu_info import cpu_description

from cotspec.backends.base import SamplingParams
from cotspec.backends.openai_backend import OpenAIBackend
from cotspec.tasks.datadir import read_jsonl, require_file, resolve_data_dir
from cotspec.teacher.engines import ENGINES
from cotspec.teacher.server import LlamaServer, start_llama_server


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


def label(server: LlamaServer, threads: int | None) -> str:
    slots = f", {server.parallel} slots" if server.engine == "llama-server" else ""
    return f"{server.engine} ({threads or 'default'} thr{slots})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    parser.add_argument("--data-dir", default=os.environ.get("COTSPEC_DATA_DIR", shared),
                        help="benchmark data folder (default: $COTSPEC_DATA_DIR, else ../shared/data)")
    parser.add_argument("--questions", type=int, default=8, help="GSM8K training questions sampled per level")
    parser.add_argument("--concurrency", default="1,2,4,8", help="comma-separated client concurrency levels")
    parser.add_argument("--max-tokens", type=int, default=128, help="generated tokens per sample, at most")
    parser.add_argument("--temperature", type=float, default=0.5, help="sampling temperature (paper: 0.5)")
    parser.add_argument("--top-logprobs", default="5",
                        help="comma-separated top-k logprob settings to run (0: none; the paper keeps 5)")
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma-separated server engines to compare")
    parser.add_argument("--slots", type=int, default=None,
                        help="llama-server slots (default: the highest concurrency level)")
    parser.add_argument("--threads", type=int, default=None, help="server CPU threads (default: half the cores)")
    parser.add_argument("--fleet", type=int, default=0, help="also run K one-thread llama-cpp-python servers (0: skip)")
    args = parser.parse_args()

    prompts = gsm8k_prompts(args.data_dir, args.questions)
    levels = [int(c) for c in args.concurrency.split(",")]
    engine_names = [e.strip() for e in args.engines.split(",") if e.strip()]
    base = SamplingParams(max_new_tokens=args.max_tokens, temperature=args.temperature, seed=1234)
    print(f"CPU: {cpu_description()}")
    print(f"{len(prompts)} GSM8K questions, max_tokens {args.max_tokens}, temperature {args.temperature}")

    with contextlib.ExitStack() as stack:
        servers = []
        for engine in engine_names:
            slots = (args.slots or max(levels)) if engine == "llama-server" else None
            servers.append(stack.enter_context(
                start_llama_server(n_ctx=1024, n_threads=args.threads, engine=engine, parallel=slots)))  # type: ignore[arg-type]
        for server in servers:  # warm-up
            measure([server.base_url], server.model_name, prompts[:1], replace(base, max_new_tokens=8), 1)
        width = max(len(label(s, args.threads)) for s in servers)
        print(f"{'server':<{width}} {'top-k':>5} {'conc':>4} {'tokens':>7} {'seconds':>8} {'tok/s':>7} {'vs c=1':>7}")
        for k in (int(v) for v in args.top_logprobs.split(",")):
            params = replace(base, top_logprobs=k)
            rates: dict[str, list[float]] = {s.engine: [] for s in servers}
            for concurrency in levels:
                for server in servers:  # in turn, so both see the same machine load
                    tokens, seconds = measure([server.base_url], server.model_name, prompts, params, concurrency)
                    rates[server.engine].append(tokens / seconds)
                    print(f"{label(server, args.threads):<{width}} {k:>5} {concurrency:>4} {tokens:>7} {seconds:>8.1f} "
                          f"{tokens / seconds:>7.1f} {rates[server.engine][-1] / rates[server.engine][0]:>7.2f}",
                          flush=True)
            if {"llama-server", "llama-cpp-python"} <= rates.keys():
                fast, slow = rates["llama-server"], rates["llama-cpp-python"]
                best_fast, best_slow = max(fast), max(slow)
                print(f"top-{k}: llama-server {best_fast:.1f} tok/s (concurrency {levels[fast.index(best_fast)]}) / "
                      f"llama-cpp-python {best_slow:.1f} tok/s (concurrency {levels[slow.index(best_slow)]}) = "
                      f"{best_fast / best_slow:.2f}x")

    if args.fleet:
        with contextlib.ExitStack() as stack:
            fleet = [stack.enter_context(start_llama_server(n_ctx=1024, n_threads=1)) for _ in range(args.fleet)]
            urls = [s.base_url for s in fleet]
            for k in (int(v) for v in args.top_logprobs.split(",")):
                params = replace(base, top_logprobs=k)
                tokens1, seconds1 = measure(urls[:1], fleet[0].model_name, prompts, params, 1)
                tokens, seconds = measure(urls, fleet[0].model_name, prompts, params, args.fleet)
                print(f"{'1 x 1 thread':<22} {k:>5} {1:>4} {tokens1:>7} {seconds1:>8.1f} {tokens1 / seconds1:>7.1f} {1.0:>7.2f}")
                print(f"{f'{args.fleet} x 1 thread':<22} {k:>5} {args.fleet:>4} {tokens:>7} {seconds:>8.1f} "
                      f"{tokens / seconds:>7.1f} {(tokens / seconds) / (tokens1 / seconds1):>7.2f}")


if __name__ == "__main__":
    main()
