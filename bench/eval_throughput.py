"""Generated tokens/s of cotspec's transformers backend against two peers, at the same GSM8K accuracy.

    .venv/bin/python bench/eval_throughput.py
    .venv/bin/python bench/eval_throughput.py --limit 16 --skip-lm-eval     # a quick look

The first --limit GSM8K test questions, zero-shot chain of thought (``"Q: " + question + "\\nLet's
think step by step\\n"``), greedy, at most --max-new-tokens new tokens, a completion ending at the
end-of-sequence token or at "Q:" (the stop string of lm-eval's gsm8k_cot_zeroshot, so all three
systems solve the same problem), on the embedded smollm2-135m-instruct:

1. ``cotspec``: `TransformersBackend`, --dtype (auto: bfloat16 on CPUs with AVX512-BF16), --batch-size
   rows per batch, longest prompts first, finished rows leaving the batch.
2. ``plain``: a per-question ``model.generate`` loop in float32, batch 1: the script one writes first.
3. ``lm-eval``: lm-evaluation-harness (hf backend, its defaults: float32 here) running its
   gsm8k_cot_zeroshot task pointed at the local test.jsonl with the prompt above, --batch-size (or
   --lm-eval-batch-size), the GGUF loaded as ``pretrained=<dir>,gguf_file=<file>``.

"Generated tokens" are the tokens of the returned completions (re-tokenized, the same count for every
system); model loading is not timed; process CPU time is printed too, as it moves less than wall time
when other processes load the machine. Accuracy is cotspec's GSM8K scoring for all three (lm-eval's own
strict/flexible exact match is printed too). The machine may be shared: the 1-minute load average is
printed before and after each run, and the ratios come from runs in this one process.
"""

from __future__ import annotations

import os

# Passive OpenMP waits, set before torch loads its OpenMP runtime: on a CPU shared with other busy
# processes, spinning intra-op threads made a 2-thread decoding step 15x slower than 1 thread here
# (2.4 s vs 0.15 s); passive waits cost nothing measurable. It applies to all three systems alike.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from cotspec.backends import SamplingParams  # noqa: E402
from cotspec.backends.transformers_backend import TransformersBackend  # noqa: E402
from cotspec.models import PRESETS, load_model  # noqa: E402
from cotspec.models.presets import preset_path  # noqa: E402
from cotspec.tasks import get_task  # noqa: E402

MODEL = "smollm2-135m-instruct"
STOP = ("Q:",)
LM_EVAL_TASK = "cotspec_bench_gsm8k_cot_zeroshot"
REPO = Path(__file__).resolve().parents[1]


def prompt_for(question: str) -> str:
    return "Q: " + question + "\nLet's think step by step\n"


@dataclass
class Run:
    system: str
    dtype: str
    batch_size: int
    texts: list[str]
    seconds: float
    cpu_seconds: float
    load_before: float
    load_after: float
    tokens: int = 0
    accuracy: float = 0.0
    note: str = ""

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds


def timed(system: str, dtype: str, batch_size: int, generate) -> Run:
    load_before = os.getloadavg()[0]
    started, cpu_started = time.perf_counter(), time.process_time()
    texts = generate()
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    print(f"  {system}: {seconds:.1f} s", flush=True)
    return Run(system, dtype, batch_size, texts, seconds, cpu_seconds, load_before, os.getloadavg()[0])


def run_cotspec(prompts: list[str], args: argparse.Namespace) -> Run:
    loaded = load_model(MODEL, dtype=args.dtype, device="cpu")
    backend = TransformersBackend(loaded, batch_size=args.batch_size)
    params = SamplingParams(max_new_tokens=args.max_new_tokens, stop=STOP)

    def generate() -> list[str]:
        texts = [""] * len(prompts)
        for index, (completion,) in backend.generate(prompts, params):
            texts[index] = completion.text
        return texts

    return timed("cotspec", str(loaded.dtype).removeprefix("torch."), args.batch_size, generate)


def run_plain(prompts: list[str], args: argparse.Namespace) -> Run:
    loaded = load_model(MODEL, dtype="float32", device="cpu")
    model, tokenizer = loaded.model, loaded.tokenizer

    def generate() -> list[str]:
        texts = []
        for prompt in prompts:
            encoded = tokenizer(prompt, return_tensors="pt")
            with torch.inference_mode():
                output = model.generate(
                    **encoded,
                    max_new_tokens=args.max_new_tokens,
                    do_sample=False,
                    stop_strings=list(STOP),
                    tokenizer=tokenizer,
                    pad_token_id=tokenizer.pad_token_id,
                )
            text = tokenizer.decode(output[0, encoded["input_ids"].shape[1] :], skip_special_tokens=True)
            texts.append(min((text.split(stop)[0] for stop in STOP), key=len))
        return texts

    return timed("plain", "float32", 1, generate)


def lm_eval_task_yaml(data_dir: Path, max_new_tokens: int) -> dict:
    """lm-eval's own gsm8k_cot_zeroshot config, reading the local test.jsonl with our prompt."""
    import lm_eval
    import yaml

    installed = Path(lm_eval.__file__).parent / "tasks" / "gsm8k" / "gsm8k-cot-zeroshot.yaml"
    config = yaml.safe_load(installed.read_text())
    for key in ("tag", "dataset_name", "training_split", "fewshot_split"):
        config.pop(key, None)
    config.update(
        task=LM_EVAL_TASK,
        dataset_path="json",
        dataset_kwargs={"data_files": {"test": str(data_dir / "gsm8k" / "test.jsonl")}},
        doc_to_text="Q: {{question}}\nLet's think step by step\n",
    )
    config["generation_kwargs"]["max_gen_toks"] = max_new_tokens
    return config


def run_lm_eval(prompts: list[str], data_dir: Path, args: argparse.Namespace) -> Run:
    import yaml
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    gguf = preset_path(PRESETS[MODEL])
    batch_size = args.lm_eval_batch_size or args.batch_size
    lm = HFLM(pretrained=str(gguf.parent), gguf_file=gguf.name, device="cpu", batch_size=batch_size)
    with tempfile.TemporaryDirectory() as include:
        config = lm_eval_task_yaml(data_dir, args.max_new_tokens)
        (Path(include) / f"{LM_EVAL_TASK}.yaml").write_text(yaml.safe_dump(config))
        task_manager = TaskManager(include_path=include)
        outcome: dict = {}

        def generate() -> list[str]:
            outcome.update(
                simple_evaluate(
                    model=lm, tasks=[LM_EVAL_TASK], limit=len(prompts), task_manager=task_manager,
                    log_samples=True, bootstrap_iters=0,
                )
            )
            # One logged sample per document and filter (strict, flexible); the generation is shared.
            by_document = {sample["doc_id"]: sample for sample in outcome["samples"][LM_EVAL_TASK]}
            samples = [by_document[doc_id] for doc_id in sorted(by_document)]
            contexts = [sample["arguments"][0][0] for sample in samples]
            mismatched = [(c, p) for c, p in zip(contexts, prompts) if c != p]
            if mismatched or len(contexts) != len(prompts):
                raise SystemExit(f"lm-eval built other prompts: {mismatched[:1]} ({len(contexts)} for {len(prompts)})")
            return [sample["resps"][0][0] for sample in samples]

        run = timed("lm-eval", str(lm.model.dtype).removeprefix("torch."), batch_size, generate)
    metrics = outcome["results"][LM_EVAL_TASK]
    run.note = "lm-eval's exact_match: strict {:.3f}, flexible {:.3f}".format(
        metrics["exact_match,strict-match"], metrics["exact_match,flexible-extract"]
    )
    return run


def gold_nll_per_token(examples, dtype: str) -> float:
    """Mean negative log-likelihood per token of the gold solutions: a finer check of a dtype than
    accuracy, which a 135M model leaves near the floor on GSM8K."""
    loaded = load_model(MODEL, dtype=dtype, device="cpu")
    tokenizer, total, count = loaded.tokenizer, 0.0, 0
    for example in examples:
        prompt = tokenizer(prompt_for(example.question))["input_ids"]
        solution = tokenizer(example.rationale or example.answer, add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            logits = loaded.model(input_ids=torch.tensor([prompt + solution])).logits[0, len(prompt) - 1 : -1]
        nll = torch.nn.functional.cross_entropy(logits.float(), torch.tensor(solution), reduction="sum")
        total += nll.item()
        count += len(solution)
    return total / count


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("COTSPEC_DATA_DIR", REPO.parent / "shared" / "data")),
        help="benchmark data directory holding gsm8k/test.jsonl (default: $COTSPEC_DATA_DIR or ../shared/data)",
    )
    parser.add_argument("--limit", type=int, default=50, help="GSM8K test questions, from the first (default: 50)")
    parser.add_argument("--batch-size", type=int, default=16, help="cotspec and lm-eval batch, prompts (default: 16)")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="limit per question, in tokens (default: 256)")
    parser.add_argument("--dtype", default="auto", help="cotspec's dtype: auto, float32 or bfloat16 (default: auto)")
    parser.add_argument("--skip-plain", action="store_true", help="skip the per-question generate loop (slowest run)")
    parser.add_argument("--skip-lm-eval", action="store_true", help="skip the lm-evaluation-harness peer")
    parser.add_argument(
        "--lm-eval-batch-size", type=int, default=None,
        help="lm-eval's batch, in prompts (default: --batch-size; lm-eval's own default is 1)",
    )
    return parser.parse_args()


def report(runs: list[Run], examples: list) -> None:
    print(f"\n{'system':<9}{'dtype':<10}{'batch':>6}{'tokens':>8}{'seconds':>9}{'tok/s':>8}{'cpu s':>8}"
          f"{'tok/cpu-s':>10}{'accuracy':>10}   load avg")
    for run in runs:
        print(f"{run.system:<9}{run.dtype:<10}{run.batch_size:>6}{run.tokens:>8}{run.seconds:>9.1f}"
              f"{run.tokens_per_second:>8.1f}{run.cpu_seconds:>8.1f}{run.tokens / run.cpu_seconds:>10.1f}"
              f"{run.accuracy:>10.3f}   {run.load_before:.1f} -> {run.load_after:.1f}"
              + (f"   ({run.note})" if run.note else ""))
    ours = runs[0]
    if ours.dtype != "float32":
        reference, reduced = gold_nll_per_token(examples, "float32"), gold_nll_per_token(examples, ours.dtype)
        print(f"gold-solution NLL per token: float32 {reference:.4f}, {ours.dtype} {reduced:.4f} "
              f"({100 * (reduced - reference) / reference:+.2f}%)")
    for peer in runs[1:]:
        same = sum(a == b for a, b in zip(ours.texts, peer.texts))
        cpu_ratio = (ours.tokens / ours.cpu_seconds) / (peer.tokens / peer.cpu_seconds)
        print(f"cotspec / {peer.system}: {ours.tokens_per_second / peer.tokens_per_second:.2f}x generated tokens/s "
              f"({cpu_ratio:.2f}x per CPU-second); accuracy {ours.accuracy:.3f} vs {peer.accuracy:.3f}; "
              f"identical completions {same}/{len(ours.texts)}")


def main() -> None:
    args = parse_args()
    task = get_task("gsm8k")
    examples = task.load(args.data_dir, "test")[: args.limit]
    prompts = [prompt_for(example.question) for example in examples]
    print(f"{len(prompts)} GSM8K test questions, {MODEL}, greedy, <= {args.max_new_tokens} new tokens, "
          f"torch {torch.__version__} on {torch.get_num_threads()} threads, "
          f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}", flush=True)

    runs = [run_cotspec(prompts, args)]
    if not args.skip_plain:
        runs.append(run_plain(prompts, args))
    if not args.skip_lm_eval:
        runs.append(run_lm_eval(prompts, args.data_dir, args))

    tokenizer = load_model(MODEL, dtype="float32", device="cpu").tokenizer
    for run in runs:
        run.tokens = sum(len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in run.texts)
        verdicts = [task.is_correct(task.extract(text), example.answer) for text, example in zip(run.texts, examples)]
        run.accuracy = sum(verdicts) / len(examples)
    report(runs, examples)


if __name__ == "__main__":
    main()
