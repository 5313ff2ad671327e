"""The sub-batch planner on real token lengths: models.batching.plan_sub_batches against the
item-by-item dynamic program it replaced (tests/test_batching.py's reference_plan).

    python -m benchmarks.planner [--n 20000] [--corpus PATH.jsonl[.gz]] [--repeat 3]

The first --n posts of the corpus, cleaned as the pipeline cleans them, are tokenized by each of
the four classifiers' tokenizers (the benchmark's tiny checkpoints: tokenizers trained on the first
20,000 posts, as `benchmarks.throughput` builds them) in batches of 1,024 (a RunInference batch),
every post by every classifier (as --all-languages runs). Both planners plan every batch with the
CPU and the CUDA defaults (token budget, item cap, per-pass overhead); the figure is the best of
--repeat passes over all batches, in milliseconds per call, and the plans are compared.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchmarks.throughput import DEFAULT_CORPUS, prepare_checkpoints, prepare_posts, quiet_offline_transformers
from models.batching import DEFAULT_MAX_ITEMS, DEFAULT_MAX_TOKENS, DEFAULT_OVERHEAD_TOKENS, plan_sub_batches
from tests.test_batching import reference_plan

BATCH = 1024


def batch_lengths(checkpoints: dict[str, str], texts: list[str]) -> list[list[int]]:
    """Token lengths (special tokens included, cut at the model's limit) of every batch of
    BATCH texts, for every classifier."""
    from models.checkpoints import load_config_dict, load_tokenizer
    from models.runtime import token_limit

    batches = []
    for path in checkpoints.values():
        tokenizer = load_tokenizer(path)
        limit = token_limit(tokenizer, load_config_dict(path))
        for start in range(0, len(texts), BATCH):
            ids = tokenizer(texts[start:start + BATCH], truncation=True, max_length=limit,
                            return_attention_mask=False)["input_ids"]
            batches.append([len(x) for x in ids])
    return batches


def ms_per_call(planner, batches: list[list[int]], budgets: tuple[int, int, int], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for lengths in batches:
            planner(lengths, *budgets)
        best = min(best, time.perf_counter() - started)
    return best / len(batches) * 1000


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000, help="posts (default 20,000)")
    parser.add_argument("--corpus", default=str(DEFAULT_CORPUS))
    parser.add_argument("--repeat", type=int, default=3, help="passes over all batches; the best counts")
    parser.add_argument("--cache", default=None, help="checkpoint cache (default ~/.cache/label_corpus_bench)")
    args = parser.parse_args(argv)
    args.scale, args.workdir = "tiny", tempfile.mkdtemp(prefix="planner-")
    quiet_offline_transformers()
    _, posts, corpus_note, _, texts = prepare_posts(args, "planner-")
    checkpoints, _ = prepare_checkpoints(args, posts, Path(args.workdir))
    batches = batch_lengths(checkpoints, texts)
    distinct = sum(len(set(b)) for b in batches) / len(batches)
    print(f"{corpus_note}: {len(texts):,} non-empty after cleaning; {len(checkpoints)} tokenizers x "
          f"batches of {BATCH} = {len(batches)} calls per setting, {distinct:.0f} distinct lengths per batch "
          f"on average")
    print(f"{'setting (max tokens, max items, overhead)':44} {'old ms/call':>12} {'new ms/call':>12} "
          f"{'x faster':>9} {'same plans':>11}")
    for device in ("cpu", "cuda"):
        budgets = (DEFAULT_MAX_TOKENS[device], DEFAULT_MAX_ITEMS[device], DEFAULT_OVERHEAD_TOKENS[device])
        same = sum(plan_sub_batches(b, *budgets) == reference_plan(b, *budgets) for b in batches)
        old = ms_per_call(reference_plan, batches, budgets, args.repeat)
        new = ms_per_call(plan_sub_batches, batches, budgets, args.repeat)
        print(f"{device + ' ' + str(budgets):44} {old:12.2f} {new:12.2f} {old / new:9.1f} "
              f"{f'{same}/{len(batches)}':>11}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
