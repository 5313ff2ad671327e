"""Language routing on the shared corpus: the cost of detection (one post at a time, and in the
pipeline's batches of 1024), the detector's confusion against the corpus's own `lang` field, the
share of posts that keep the classifiers of their language, the posts that reach a classifier
of another language (routing by language and script: transforms.language.runs_on), the Han
share of the letters that the script rule's threshold sits between, and the model work routing
saves. Prints the figures.

    PYTHONPATH=$PWD python -m benchmarks.language_routing [--corpus ../shared/corpora/social_posts.jsonl.gz]

Compute saved: the classifier runs (posts x classifiers) and the characters of cleaned text
(a proxy for tokens, hence model time) that routing leaves out, against --all-languages.
"""
from __future__ import annotations

import argparse
import gzip
import json
import time
from collections import Counter
from pathlib import Path

from models.classifiers import PUBLISHED as SPECS
from transforms.cleaning import clean_text
from transforms.language import MIN_SCRIPT_SHARE_FIT, UNDETERMINED, detect, detect_many, runs_on, script_shares

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "social_posts.jsonl.gz"
BATCH = 1024  # the pipeline's inference batch, which the batch detector is meant to run on


def read_posts(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    args = parser.parse_args(argv)
    posts = read_posts(args.corpus)
    texts = [post["text"] for post in posts]
    detect_many(texts[:2])  # the model's tables, built once per process, are not a batch's cost
    detected, batched, seconds, batch_seconds = [], [], 0.0, 0.0
    for start in range(0, len(texts), BATCH):  # taking turns, batch by batch: both see the same machine load
        batch, clock = texts[start:start + BATCH], time.perf_counter()
        detected += [detect(text) for text in batch]
        seconds, clock = seconds + time.perf_counter() - clock, time.perf_counter()
        batched += detect_many(batch)
        batch_seconds += time.perf_counter() - clock
    print(f"{len(posts):,} posts from {args.corpus.name}; detection one post at a time (detect) "
          f"{1000 * seconds / len(posts):.4f} ms/post ({seconds:.1f} s on one core); in batches of {BATCH} "
          f"(detect_many) {1000 * batch_seconds / len(posts):.4f} ms/post ({batch_seconds:.1f} s), "
          f"{seconds / batch_seconds:.1f}x cheaper; same answers: {batched == detected}")

    confusion = Counter((post["lang"], lang) for post, lang in zip(posts, detected))
    truths = sorted({truth for truth, _ in confusion})
    columns = [code for code, _ in Counter(lang for lang in detected).most_common(8)]
    print("\nconfusion (rows: the corpus's lang; columns: detected; 'other' = any other code)")
    print(f"{'':>6}" + "".join(f"{c:>9}" for c in columns) + f"{'other':>9}")
    for truth in truths:
        row = [confusion[(truth, c)] for c in columns]
        other = sum(n for (t, c), n in confusion.items() if t == truth and c not in columns)
        print(f"{truth:>6}" + "".join(f"{n:>9,}" for n in row) + f"{other:>9,}")

    cleaned = [clean_text(text) for text in texts]
    shares = [share for start in range(0, len(cleaned), BATCH) for share in script_shares(cleaned[start:start + BATCH])]
    routed = [{name: runs_on(lang, spec.languages, share) for name, spec in SPECS.items()}
              for lang, share in zip(detected, shares)]
    print("\nposts that keep the classifiers of their language (routing runs the classifier on them; "
          "a post whose cleaned text is empty counts as not kept)")
    for truth in truths:
        group = [(lang, runs) for post, lang, runs in zip(posts, detected, routed) if post["lang"] == truth]
        for name, spec in SPECS.items():
            if truth in spec.languages:
                kept = sum(runs[name] for _, runs in group)
                print(f"  {truth} posts keeping {name:<10} {kept:>7,} of {len(group):>7,} = {100 * kept / len(group):.3f}%")
        unsure = sum(lang == UNDETERMINED for lang, _ in group)
        print(f"  {truth} posts detected as '{UNDETERMINED}' (the classifiers their script fits run): {unsure:,}")

    print("\nposts that reach a classifier of another language")
    for truth in truths:
        group = [runs for post, runs in zip(posts, routed) if post["lang"] == truth]
        for name, spec in SPECS.items():
            if truth not in spec.languages:
                reached = sum(runs[name] for runs in group)
                print(f"  {truth} posts reaching {name:<10} {reached:>7,} of {len(group):>7,} = "
                      f"{100 * reached / len(group):.3f}%")
    stars_by_language = SPECS["stars"].languages | {UNDETERMINED}  # what the language rule alone leaves to stars
    han = {truth: [share.get("Han", 0.0) for post, lang, share in zip(posts, detected, shares)
                   if post["lang"] == truth and lang in stars_by_language] for truth in ("en", "zh")}
    print(f"\nHan share of the letters (script_shares) of the posts the language rule alone leaves to stars "
          f"(zh or und; stars needs {MIN_SCRIPT_SHARE_FIT}): English posts at most {max(han['en'], default=0):.3f} "
          f"(of {len(han['en']):,}), Chinese posts at least {min(han['zh'], default=0):.3f} (of {len(han['zh']):,})")

    chars = [len(text) for text in cleaned]
    runs_all = len(posts) * len(SPECS)
    runs_routed = sum(sum(runs.values()) for runs in routed)
    chars_all = sum(chars) * len(SPECS)
    chars_routed = sum(n * sum(runs.values()) for n, runs in zip(chars, routed))
    print(f"\ncompute saved against --all-languages: classifier runs {runs_routed:,} of {runs_all:,} "
          f"({100 * (1 - runs_routed / runs_all):.1f}% saved); cleaned characters through the models "
          f"{chars_routed:,} of {chars_all:,} ({100 * (1 - chars_routed / chars_all):.1f}% saved)")


if __name__ == "__main__":
    main()
