"""Generated tokens/s of cotspec's transformers backend against two peers, at the same accuracy.

    .venv/bin/python bench/eval_throughput.py                          # zero-shot GSM8K, 50 questions
    .venv/bin/python bench/eval_throughput.py --workload gsm8k-8shot   # lm-eval's gsm8k_cot, 50 questions
    .venv/bin/python bench/eval_throughput.py --workload bbh-3shot     # bbh_cot_fewshot, 3 tasks x 20
    .venv/bin/python bench/eval_throughput.py --limit 16 --skip-lm-eval     # a quick look

Workloads, greedy, at most --max-new-tokens new tokens, on the embedded smollm2-135m-instruct:

* ``gsm8k-zero-shot``: the first --limit GSM8K test questions, zero-shot chain of thought (``"Q: " +
  question + "\\nLet's think step by step\\n"``), a completion ending at the end-of-sequence token or
  at "Q:" (the stop string of lm-eval's gsm8k_cot_zeroshot, so all three systems solve the same problem).
* ``gsm8k-8shot``: lm-eval's ``gsm8k_cot`` (8 chain-of-thought exemplars, ~800 prompt tokens that every
  question shares) on the first --limit test questions.
* ``bbh-3shot``: lm-eval's ``bbh_cot_fewshot_<task>`` (the task's 3-shot CoT prompt) for each of
  --bbh-tasks, the first --limit questions of each.

The few-shot prompts and stop strings are the ones lm-eval builds from its own task configs (pointed at
the local data files), so every system decodes the same strings. Systems:

1. ``cotspec``: `TransformersBackend`, --dtype (auto: bfloat16 on CPUs with AVX512-BF16), --batch-size
   rows decoded together (continuous batching: finished rows leave, waiting prompts join), a prefix
   that the prompts share (the exemplars) prefilled once.
2. ``plain``: a per-question ``model.generate`` loop in float32, batch 1: the script one writes first.
3. ``lm-eval``: lm-evaluation-harness (hf backend, its defaults: float32 here) running the workload's
   task (for zero-shot: gsm8k_cot_zeroshot with the prompt above) pointed at the local data files,
   --batch-size (or --lm-eval-batch-size), the GGUF loaded as ``pretrained=<dir>,gguf_file=<file>``.

"Generated tokens" are the tokens of the returned completions (re-tokenized, the same count for every
system); model loading is not timed; process CPU time is printed too, as it moves less than wall time
when other processes load the machine. Accuracy is cotspec's scoring of the task for all three
(lm-eval's own exact-match scores are printed too). The machine may be shared: the 1-minute load average is
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
from typing import Any  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from cotspec.backends import SamplingParams  # noqa: E402
from cotspec.backends.transformers_backend import TransformersBackend  # noqa: E402
from cotspec.models import PRESETS, load_model  # noqa: E402
from cotspec.models.presets import preset_path  # noqa: E402
from cotspec.tasks import Task, get_task  # noqa: E402
from cpu_info import cpu_description  # noqa: E402

MODEL = "smollm2-135m-instruct"
REPO = Path(__file__).resolve().parents[1]
WORKLOADS = ("gsm8k-zero-shot", "gsm8k-8shot", "bbh-3shot")
DEFAULT_BBH_TASKS = "date_understanding,logical_deduction_three_objects,multistep_arithmetic_two"


def prompt_for(question: str) -> str:
    return "Q: " + question + "\nLet's think step by step\n"


@dataclass
class Item:
    """One question of a workload: the prompt every system decodes and how cotspec scores the answer."""

    task: Task
    example: Any
    prompt: str
    lm_eval_task: str
    doc_id: int


@dataclass
class Workload:
    items: list[Item]
    stop: tuple[str, ...]
    lm_eval_configs: dict[str, dict]  # task name -> config, written as YAML for lm-eval's TaskManager


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
    correct: int = 0
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


def run_cotspec(prompts: list[str], stop: tuple[str, ...], args: argparse.Namespace) -> Run:
    loaded = load_model(MODEL, dtype=args.dtype, device="cpu")
    backend = TransformersBackend(loaded, batch_size=args.batch_size)
    params = SamplingParams(max_new_tokens=args.max_new_tokens, stop=stop)

    def generate() -> list[str]:
        texts = [""] * len(prompts)
        for index, (completion,) in backend.generate(prompts, params):
            texts[index] = completion.text
        return texts

    return timed("cotspec", str(loaded.dtype).removeprefix("torch."), args.batch_size, generate)


def run_plain(prompts: list[str], stop: tuple[str, ...], args: argparse.Namespace) -> Run:
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
                    stop_strings=list(stop),
                    tokenizer=tokenizer,
                    pad_token_id=tokenizer.pad_token_id,
                )
            text = tokenizer.decode(output[0, encoded["input_ids"].shape[1] :], skip_special_tokens=True)
            texts.append(min((text.split(string)[0] for string in stop), key=len))
        return texts

    return timed("plain", "float32", 1, generate)


def installed_config(relative: str) -> dict:
    """One of lm-eval's installed task configs, with the template it includes merged under it."""
    import lm_eval
    import yaml

    path = Path(lm_eval.__file__).parent / "tasks" / relative
    config = yaml.safe_load(path.read_text())
    include = config.pop("include", None)
    if include:
        merged = yaml.safe_load((path.parent / include).read_text())
        merged.update(config)
        config = merged
    for key in ("tag", "group", "dataset_name", "training_split", "validation_split", "fewshot_split"):
        config.pop(key, None)
    return config


def local_config(name: str, relative: str, data_file: Path, max_new_tokens: int, **dataset_kwargs) -> dict:
    """lm-eval's own config of a task, renamed `name`, reading `data_file` (a local copy of its dataset)."""
    config = installed_config(relative)
    config.update(
        task=name,
        dataset_path="json",
        dataset_kwargs={"data_files": {"test": str(data_file)}, **dataset_kwargs},
        test_split="test",
    )
    config["generation_kwargs"]["max_gen_toks"] = max_new_tokens
    return config


def build_workload(args: argparse.Namespace, include: Path) -> Workload:
    """The workload's lm-eval task configs (written to `include`) and the prompts lm-eval builds from them."""
    import yaml
    from lm_eval.tasks import TaskManager

    data, max_new = args.data_dir, args.max_new_tokens
    configs: dict[str, tuple[dict, Task]] = {}
    if args.workload == "gsm8k-zero-shot":
        config = local_config("cotspec_bench_gsm8k_cot_zeroshot", "gsm8k/gsm8k-cot-zeroshot.yaml",
                              data / "gsm8k" / "test.jsonl", max_new)
        config["doc_to_text"] = "Q: {{question}}\nLet's think step by step\n"
        configs[config["task"]] = (config, get_task("gsm8k"))
    elif args.workload == "gsm8k-8shot":
        config = local_config("cotspec_bench_gsm8k_cot", "gsm8k/gsm8k-cot.yaml", data / "gsm8k" / "test.jsonl", max_new)
        configs[config["task"]] = (config, get_task("gsm8k"))
    else:
        for task_name in args.bbh_tasks.split(","):
            config = local_config(f"cotspec_bench_bbh_{task_name}", f"bbh/cot_fewshot/{task_name}.yaml",
                                  data / "bbh" / "bbh" / f"{task_name}.json", max_new, field="examples")
            configs[config["task"]] = (config, get_task(f"bbh:{task_name}"))
    for name, (config, _) in configs.items():
        (include / f"{name}.yaml").write_text(yaml.safe_dump(config))

    stops = {tuple(config["generation_kwargs"]["until"]) for config, _ in configs.values()}
    if len(stops) != 1:
        raise SystemExit(f"the workload's lm-eval tasks stop at different strings: {stops}")
    lm_eval_tasks = TaskManager(include_path=str(include)).load(list(configs))["tasks"]
    items = []
    for name, (config, task) in configs.items():
        examples = task.load(data, "test")
        lm_eval_task = lm_eval_tasks[name]
        lm_eval_task.build_all_requests(limit=args.limit, rank=0, world_size=1)
        for instance in sorted(lm_eval_task.instances, key=lambda instance: instance.doc_id):
            example = examples[instance.doc_id]
            prompt = instance.arguments[0]
            if example.question not in prompt:
                raise SystemExit(f"{name}: lm-eval's document {instance.doc_id} is not cotspec's {example.question!r}")
            items.append(Item(task, example, prompt, name, instance.doc_id))
    return Workload(items, stops.pop(), {name: config for name, (config, _) in configs.items()})


def run_lm_eval(workload: Workload, include: Path, args: argparse.Namespace) -> Run:
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    gguf = preset_path(PRESETS[MODEL])
    batch_size = args.lm_eval_batch_size or args.batch_size
    lm = HFLM(pretrained=str(gguf.parent), gguf_file=gguf.name, device="cpu", batch_size=batch_size)
    task_manager = TaskManager(include_path=str(include))
    outcome: dict = {}

    def generate() -> list[str]:
        outcome.update(
            simple_evaluate(
                model=lm, tasks=list(workload.lm_eval_configs), limit=args.limit, task_manager=task_manager,
                log_samples=True, bootstrap_iters=0,
            )
        )
        # One logged sample per document and filter; the generation is shared.
        by_document = {
            (name, sample["doc_id"]): sample for name, samples in outcome["samples"].items() for sample in samples
        }
        texts = []
        for item in workload.items:
            sample = by_document.get((item.lm_eval_task, item.doc_id))
            if sample is None or sample["arguments"][0][0] != item.prompt:
                raise SystemExit(f"lm-eval decoded another prompt for {item.lm_eval_task} document {item.doc_id}")
            texts.append(sample["resps"][0][0])
        return texts

    run = timed("lm-eval", str(lm.model.dtype).removeprefix("torch."), batch_size, generate)
    run.note = "lm-eval's own scores: " + ", ".join(
        f"{key.removeprefix('exact_match,')} {value:.3f}"
        for metrics in outcome["results"].values()
        for key, value in metrics.items()
        if key.startswith("exact_match,") and isinstance(value, float)
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
    parser.add_argument("--workload", choices=WORKLOADS, default=WORKLOADS[0], help="what to decode (default: %(default)s)")
    parser.add_argument(
        "--limit", type=int, default=None,
        help="questions (per task for BBH), from the first (default: 50 for GSM8K, 20 per BBH task)",
    )
    parser.add_argument(
        "--bbh-tasks", default=DEFAULT_BBH_TASKS, help="comma-separated BBH tasks of bbh-3shot (default: %(default)s)"
    )
    parser.add_argument("--batch-size", type=int, default=32, help="cotspec and lm-eval batch, prompts (default: 32)")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="limit per question, in tokens (default: 256)")
    parser.add_argument("--dtype", default="auto", help="cotspec's dtype: auto, float32 or bfloat16 (default: auto)")
    parser.add_argument("--skip-plain", action="store_true", help="skip the per-question generate loop (slowest run)")
    parser.add_argument("--skip-lm-eval", action="store_true", help="skip the lm-evaluation-harness peer")
    parser.add_argument(
        "--lm-eval-batch-size", type=int, default=None,
        help="lm-eval's batch, in prompts (default: --batch-size; lm-eval's own default is 1)",
    )
    args = parser.parse_args()
    if args.limit is None:
        args.limit = 20 if args.workload == "bbh-3shot" else 50
    return args


def report(runs: list[Run], examples: list) -> None:
    print(f"\n{'system':<9}{'dtype':<10}{'batch':>6}{'tokens':>8}{'seconds':>9}{'tok/s':>8}{'cpu s':>8}"
          f"{'tok/cpu-s':>10}{'accuracy':>10}   load avg")
    for run in runs:
        print(f"{run.system:<9}{run.dtype:<10}{run.batch_size:>6}{run.tokens:>8}{run.seconds:>9.1f}"
              f"{run.tokens_per_second:>8.1f}{run.cpu_seconds:>8.1f}{run.tokens / run.cpu_seconds:>10.1f}"
              f"{run.accuracy:>10.3f}   {run.load_before:.1f} -> {run.load_after:.1f}"
              + (f"   ({run.note})" if run.note else ""))
    ours = runs[0]
    if ours.dtype != "float32" and examples:
        reference, reduced = gold_nll_per_token(examples, "float32"), gold_nll_per_token(examples, ours.dtype)
        print(f"gold-solution NLL per token: float32 {reference:.4f}, {ours.dtype} {reduced:.4f} "
              f"({100 * (reduced - reference) / reference:+.2f}%)")
    for peer in runs[1:]:
        same = sum(a == b for a, b in zip(ours.texts, peer.texts))
        cpu_ratio = (ours.tokens / ours.cpu_seconds) / (peer.tokens / peer.cpu_seconds)
        print(f"cotspec / {peer.system}: {ours.tokens_per_second / peer.tokens_per_second:.2f}x generated tokens/s "
              f"({cpu_ratio:.2f}x per CPU-second); accuracy {ours.correct} vs {peer.correct} of {len(ours.texts)}; "
              f"identical completions {same}/{len(ours.texts)}")


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory() as include:
        workload = build_workload(args, Path(include))
        prompts = [item.prompt for item in workload.items]
        prompt_tokens = load_model(MODEL, dtype="float32", device="cpu").tokenizer(prompts)["input_ids"]
        print(f"{args.workload}: {len(prompts)} prompts ({sum(map(len, prompt_tokens)) / len(prompts):.0f} tokens "
              f"on average), {MODEL}, greedy, <= {args.max_new_tokens} new tokens, stop at {list(workload.stop)}, "
              f"torch {torch.__version__} on {torch.get_num_threads()} threads, "
              f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}\nCPU: {cpu_description()}", flush=True)

        runs = [run_cotspec(prompts, workload.stop, args)]
        if not args.skip_plain:
            runs.append(run_plain(prompts, workload.stop, args))
        if not args.skip_lm_eval:
            runs.append(run_lm_eval(workload, Path(include), args))

    tokenizer = load_model(MODEL, dtype="float32", device="cpu").tokenizer
    for run in runs:
        run.tokens = sum(len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in run.texts)
        verdicts = [item.task.is_correct(item.task.extract(text), item.example.answer)
                    for text, item in zip(run.texts, workload.items)]
        run.correct = sum(verdicts)
        run.accuracy = run.correct / len(workload.items)
    report(runs, [item.example for item in workload.items] if args.workload != "bbh-3shot" else [])


if __name__ == "__main__":
    main()
