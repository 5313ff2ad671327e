"""Which CPU backend and precision keep the labels: per classifier, the share of posts whose labels
equal torch fp32's, and the forward passes' speed against torch fp32 measured in the same run.

    python -m benchmarks.label_agreement --models out/demo/checkpoints/models.json [--model NAME=DIR ...]
        [--posts 10000] [--corpus ../shared/corpora/social_posts.jsonl.gz] [--contenders ...] [--json FILE]

Every contender (torch-fp32, the reference; torch-bf16, torch-int8, ov-fp32, ov-bf16, ov-int8)
labels the same posts of the corpus (its first --posts, routed by language as the job routes
them) through the job's own handler code (models.batch_labeling.label_batch: planner, heads,
routing), one contender after the other in this process. A post agrees when every label column
of the classifier equals torch fp32's: each politics topic's class, the star, the sentiment, the
emotion list (each emotion at its threshold), a generic classifier's label(s). Scores are not
labels: the table also shows the largest score difference. ov-int8 is calibrated first
(models.export) on --calibration posts sampled from the corpus after the measured ones.

The default backend and precision of a CPU run (models.classifier.cpu_choice) is the fastest
with >= 99.5% agreement for every classifier; the script prints which one that is here.
Speed is forward-pass texts/s over the same texts (the sum of the handler's timed passes), as a
ratio to torch fp32 in this run: on a machine shared with other work only the ratios mean much.
"""
from __future__ import annotations

import argparse
import gzip
import itertools
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_CORPUS = HERE.parent.parent / "shared" / "corpora" / "social_posts.jsonl.gz"
CONTENDERS = {"torch-fp32": ("torch", "fp32"), "torch-bf16": ("torch", "bf16"), "torch-int8": ("torch", "int8"),
              "ov-fp32": ("openvino", "fp32"), "ov-bf16": ("openvino", "bf16"), "ov-int8": ("openvino", "int8")}
REFERENCE = "torch-fp32"
AGREEMENT_TARGET = 0.995
BATCH = 1024


def read_posts(path: str, skip: int, n: int) -> list[dict]:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        lines = itertools.islice(handle, skip, skip + n)
        return [{"id": r.get("id"), "text": r["text"], "lang": r.get("lang")}
                for r in map(json.loads, lines) if isinstance(r.get("text"), str)]


def prepared_rows(posts: list[dict], max_tokens: int) -> list[dict]:
    from transforms.cleaning import CleaningOptions, prepare_row

    return [prepare_row(dict(post), CleaningOptions(), max_tokens) for post in posts]


def label_columns(head) -> tuple[list[str], list[str]]:
    """(label columns, score columns) of a head: scores are the float ones."""
    import pyarrow as pa

    labels = [f.name for f in head.fields if not pa.types.is_floating(f.type)]
    scores = [f.name for f in head.fields if pa.types.is_floating(f.type)]
    return labels, scores


def run_contender(checkpoints: dict, routes: dict, rows: list[dict], backend: str, precision: str,
                  threads: int) -> dict:
    """Every classifier's columns per post (None where it did not run) and its forward-pass seconds."""
    from models.batch_labeling import LoadedClassifiers, label_batch
    from models.classifier import InferenceOptions, load_classifier

    options = InferenceOptions(device="cpu", cpu_backend=backend, cpu_precision=precision, cpu_threads=threads)
    started = time.perf_counter()
    model = LoadedClassifiers({name: load_classifier(c, options) for name, c in checkpoints.items()})
    load_seconds = time.perf_counter() - started
    columns = {name: [None] * len(rows) for name in checkpoints}
    seconds = dict.fromkeys(checkpoints, 0.0)
    texts = dict.fromkeys(checkpoints, 0)
    for start in range(0, len(rows), BATCH):
        batch = [dict(row) for row in rows[start:start + BATCH]]
        for i, row in enumerate(batch):
            row["_i"] = start + i
        labeled, stats = label_batch(batch, model, routes)
        for name, stat in stats.items():
            seconds[name] += stat["inference_us"] / 1e6
            texts[name] += labeled.inferences[name]
        for row in labeled.rows:
            for name in checkpoints:
                fields = model.classifiers[name].head.fields
                if any(f.name in row for f in fields):
                    columns[name][row["_i"]] = {f.name: row.get(f.name) for f in fields}
    return {"columns": columns, "seconds": seconds, "texts": texts, "load_seconds": load_seconds}


def compare(reference: list, other: list, labels: list[str], scores: list[str]) -> tuple[float, float, int]:
    """(share of the posts the reference labeled whose labels all agree, the largest score difference, posts)."""
    import math

    agree = total = 0
    largest = 0.0
    for ref, got in zip(reference, other):
        if ref is None:
            continue
        total += 1
        if got is not None and all(_same(ref.get(c), got.get(c)) for c in labels):
            agree += 1
        for c in scores:
            a, b = ref.get(c), (got or {}).get(c)
            if a is not None and b is not None and not (math.isnan(a) or math.isnan(b)):
                largest = max(largest, abs(a - b))
    return (agree / total if total else 1.0), largest, total


def _same(a, b) -> bool:
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return sorted(a or []) == sorted(b or [])
    return a == b


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.label_agreement", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", help="JSON file: classifier name -> checkpoint directory")
    parser.add_argument("--model", action="append", default=[], metavar="NAME=DIR")
    parser.add_argument("--corpus", default=str(DEFAULT_CORPUS))
    parser.add_argument("--posts", type=int, default=10_000)
    parser.add_argument("--calibration", type=int, default=300, help="posts to calibrate ov-int8 with")
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--threads", type=int, default=None, help="threads per forward pass (default: the cores)")
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

    from models.checkpoints import load_config_dict, resolve
    from models.classifiers import PUBLISHED, classifier_for
    from models.export import export_int8
    from models.openvino_backend import cpu_has_bf16
    from models.runtime import clean_token_limit, worker_cores

    refs = json.load(open(args.models)) if args.models else {}
    refs.update(item.split("=", 1) for item in args.model)
    if not refs:
        parser.error("give --models or --model")
    names = [c.strip() for c in args.contenders.split(",") if c.strip()]
    if REFERENCE not in names:
        names.insert(0, REFERENCE)
    checkpoints = {name: resolve(name, ref) for name, ref in refs.items()}
    configs = {name: load_config_dict(c.local_dir) for name, c in checkpoints.items()}
    routes = {name: PUBLISHED[name].languages if name in PUBLISHED else classifier_for(name).languages_for(configs[name])
              for name in checkpoints}
    heads = {name: classifier_for(name).head_for(configs[name]) for name in checkpoints}
    rows = prepared_rows(read_posts(args.corpus, 0, args.posts), clean_token_limit(configs.values()))
    threads = args.threads or worker_cores()
    print(f"{len(rows)} posts of {args.corpus}; {threads} thread(s); CPU bf16: {cpu_has_bf16()}; "
          f"classifiers: {', '.join(f'{n}={r}' for n, r in refs.items())}", flush=True)
    if "ov-int8" in names:
        from transforms.cleaning import clean_text  # what the export command cleans its sample with

        calibration = [t for t in (clean_text(p["text"]) for p in read_posts(args.corpus, args.posts,
                                                                             args.calibration)) if t]
        for name, c in checkpoints.items():
            started = time.perf_counter()
            _, built = export_int8(c.local_dir, c.revision, calibration)
            print(f"ov-int8 {name}: {'calibrated' if built else 'cached'} ({time.perf_counter() - started:.0f} s)",
                  flush=True)

    results = {}
    for contender in names:
        backend, precision = CONTENDERS[contender]
        results[contender] = run_contender(checkpoints, routes, rows, backend, precision, threads)
        print(f"{contender}: done (load {results[contender]['load_seconds']:.1f} s, forward "
              f"{sum(results[contender]['seconds'].values()):.1f} s)", flush=True)

    reference = results[REFERENCE]
    table = {}
    for contender in names:
        table[contender] = {}
        for name in checkpoints:
            labels, scores = label_columns(heads[name])
            share, largest, total = compare(reference["columns"][name], results[contender]["columns"][name],
                                            labels, scores)
            speed = reference["seconds"][name] / results[contender]["seconds"][name]
            table[contender][name] = {"agreement": share, "max_score_diff": largest, "posts": total,
                                      "speed_vs_torch_fp32": speed}
    print(f"\n| contender | " + " | ".join(f"{n}: agree, x fp32" for n in checkpoints) + " | max \\|dp\\| |")
    print("|---|" + "---|" * (len(checkpoints) + 1))
    for contender, per in table.items():
        cells = [f"{per[n]['agreement']:.2%}, {per[n]['speed_vs_torch_fp32']:.2f}x" for n in checkpoints]
        print(f"| {contender} | " + " | ".join(cells) + f" | {max(v['max_score_diff'] for v in per.values()):.1e} |")
    print("posts per classifier: " + ", ".join(f"{n} {table[REFERENCE][n]['posts']}" for n in checkpoints))
    holding = [c for c in names if all(v["agreement"] >= AGREEMENT_TARGET for v in table[c].values())]
    total_seconds = {c: sum(results[c]["seconds"].values()) for c in names}
    best = min(holding, key=total_seconds.get)
    print(f"fastest with >= {AGREEMENT_TARGET:.1%} agreement for every classifier: {best} "
          f"({total_seconds[REFERENCE] / total_seconds[best]:.2f}x torch fp32's forward passes)")
    if args.json:
        Path(args.json).write_text(json.dumps({"posts": len(rows), "threads": threads, "cpu_bf16": cpu_has_bf16(),
                                               "checkpoints": refs, "table": table, "fastest_holding": best},
                                              indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
