"""What the portable llama.cpp build costs: the installed teacher server against another build of it.

    CMAKE_ARGS=-DLLAVA_BUILD=OFF .venv/bin/python -m pip wheel --no-cache-dir --no-deps -w /tmp/native \\
        llama-cpp-python==0.3.36                       # pip's default: a native build for this CPU
    .venv/bin/python -m pip install --no-deps --target /tmp/native-site /tmp/native/*.whl
    .venv/bin/python bench/llama_build.py --other-site /tmp/native-site --other-label native

`make` installs llama-cpp-python built for AVX2 (no AVX-512, no AMX: see the Makefile). This starts the
embedded SmolLM2-135M-Instruct GGUF under the installed build and under the build found in
``--other-site`` (put first on the server's PYTHONPATH), samples the same GSM8K prompts with the same
seeds from each, with and without top-5 log-probabilities, in alternating rounds so machine load falls
on both alike, and prints generated tokens/s per build and the ratio. Also prints each build's CPU
feature line and this machine's CPU model.
"""

from __future__ import annotations

import argparse
import os
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from cpu_info import cpu_description
from typing import Iterator

from cotspec.backends.base import SamplingParams
from cotspec.backends.openai_backend import OpenAIBackend
from cotspec.tasks.datadir import read_jsonl, require_file, resolve_data_dir
from cotspec.teacher.server import LlamaServer, start_llama_server


def gsm8k_prompts(data_dir: str | None, count: int) -> list[str]:
    path = require_file(resolve_data_dir(data_dir), "gsm8k/train.jsonl")
    prompts = []
    for _, record in read_jsonl(path):
        prompts.append("Q: " + record["question"] + "\nLet's think step by step\n")
        if len(prompts) == count:
            break
    return prompts


@contextmanager
def server_from(site: str | None, threads: int | None) -> Iterator[LlamaServer]:
    """The embedded model served by the installed llama-cpp-python, or by the one in `site`."""
    saved = os.environ.get("PYTHONPATH")
    if site:  # the server child inherits it at spawn
        os.environ["PYTHONPATH"] = site + (os.pathsep + saved if saved else "")
    try:
        with start_llama_server(n_ctx=1024, n_threads=threads) as server:
            yield server
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def features(server: LlamaServer) -> str:
    for line in server.log_path.read_text(errors="replace").splitlines():
        if "AVX2 = " in line:
            return line.split("CPU :", 1)[-1].strip()
    return "(no feature line in the server log)"


def sample(server: LlamaServer, prompts: list[str], params: SamplingParams) -> tuple[int, float]:
    """(generated tokens, seconds) for one chain per prompt, one request at a time."""
    backend = OpenAIBackend.from_options(server.base_url, model=server.model_name, concurrency=1)
    started = time.perf_counter()
    tokens = sum(c.completion_tokens for _, cs in backend.generate(prompts, params) for c in cs)
    return tokens, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    parser.add_argument("--data-dir", default=os.environ.get("COTSPEC_DATA_DIR", shared),
                        help="benchmark data folder (default: $COTSPEC_DATA_DIR, else ../shared/data)")
    parser.add_argument("--other-site", required=True, help="a directory holding another llama_cpp package")
    parser.add_argument("--other-label", default="other", help="name of that build in the table")
    parser.add_argument("--questions", type=int, default=4, help="GSM8K training questions per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per build and setting")
    parser.add_argument("--max-tokens", type=int, default=96, help="generated tokens per chain, at most")
    parser.add_argument("--threads", type=int, default=None, help="server threads (default: half the cores)")
    args = parser.parse_args()

    prompts = gsm8k_prompts(args.data_dir, args.questions)
    base = SamplingParams(max_new_tokens=args.max_tokens, temperature=0.5, seed=1234)
    builds = {"portable (make)": None, args.other_label: args.other_site}
    print(f"CPU: {cpu_description()}")
    print(f"{len(prompts)} GSM8K questions x {args.rounds} rounds, max_tokens {args.max_tokens}, temperature 0.5")
    totals: dict[tuple[str, int], list[float]] = {}
    with server_from(None, args.threads) as portable, server_from(args.other_site, args.threads) as other:
        servers = {"portable (make)": portable, args.other_label: other}
        for label, server in servers.items():
            print(f"{label:<16} features: {features(server)}")
            sample(server, prompts[:1], replace(base, max_new_tokens=8))  # warm-up
        for top_k in (0, 5):
            params = replace(base, top_logprobs=top_k)
            for _ in range(args.rounds):
                for label, server in servers.items():  # alternate: load falls on both alike
                    tokens, seconds = sample(server, prompts, params)
                    total = totals.setdefault((label, top_k), [0.0, 0.0])
                    total[0] += tokens
                    total[1] += seconds
    print(f"{'build':<16} {'top-k':>5} {'tokens':>7} {'seconds':>8} {'tok/s':>7} {'vs portable':>12}")
    for top_k in (0, 5):
        reference = totals[("portable (make)", top_k)]
        for label in builds:
            tokens, seconds = totals[(label, top_k)]
            ratio = (tokens / seconds) / (reference[0] / reference[1])
            print(f"{label:<16} {top_k:>5} {int(tokens):>7} {seconds:>8.1f} {tokens / seconds:>7.1f} {ratio:>12.2f}")


if __name__ == "__main__":
    main()
