"""What relabeling a committed partition costs with --skip-if-done (issue 19), against a full run.

    python -m benchmarks.relabel [--n 4000] [--scale small] [--corpus PATH] [--cpu-threads 1]

The first --n posts of the shared corpus (generated ones without it), in 10 input files, labeled
by the four classifiers at --scale (benchmarks/checkpoints.py, default routing). Scenarios, each
on its own copy of a committed partition:

- full: a fresh full run (the reference);
- sentiment retrained / emotion retrained: the same files with that classifier's checkpoint
  replaced by one with other weights (another revision);
- classifier added: the partition was labeled without politics, which this run adds;
- 10% late posts: the partition was labeled from 9 of the files; the 10th arrives.

For each: wall time, model time (the forward passes: the handler's inference_us counters), their
share of the full run's, and the share of the full run's FLOPs the changed work should cost
(dense-layer FLOPs per token x the tokens each classifier ran on in the full run, from the
manifests: for late posts, the full run's tokens minus those of the 9-file run).
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.throughput import DEFAULT_CORPUS, load_posts, quiet_offline_transformers, write_jsonl

FILES = 10


def retrained(checkpoint: str, target: Path) -> str:
    """The checkpoint with every weight moved: what a retrained one is to the reuse logic (another
    revision, other scores), at the same cost per token."""
    from safetensors.numpy import load_file, save_file

    if not target.exists():
        shutil.copytree(checkpoint, target)
        weights = load_file(target / "model.safetensors")
        save_file({k: v * 1.01 for k, v in weights.items()}, target / "model.safetensors", metadata={"format": "pt"})
    return str(target)


def label(folder: Path, output: Path, models: dict[str, str], threads: int | None, *extra: str) -> dict:
    """One run of the job in this process: wall and model seconds, and its manifest."""
    from pipelines.label_corpus import config_from_argv
    from pipelines.labeling import counter_values, label as run_label
    from transforms import contract
    from transforms import partition

    argv = ["--input", str(folder / "*.jsonl"), "--output", str(output), "--device", "cpu",
            "--only", ",".join(models), *extra]
    for name, path in models.items():
        argv += ["--model", f"{name}={path}"]
    if threads:
        argv += ["--cpu-threads", str(threads)]
    started = time.perf_counter()
    result = run_label(config_from_argv(argv))
    wall = time.perf_counter() - started
    counters = counter_values(result)
    model_s = sum(v for (namespace, name), v in counters.items()
                  if contract.namespace_classifier(namespace) is not None and name == "inference_us") / 1e6
    return {"wall_s": wall, "model_s": model_s, "manifest": partition.read_manifest(str(output))}


def dense_flops(name: str, scale: str, tokens: int) -> float:
    from benchmarks.checkpoints import SHAPES, linear_flops_per_token

    return linear_flops_per_token(SHAPES[scale][name]) * tokens


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--scale", choices=("small", "tiny", "real"), default="small")
    parser.add_argument("--corpus", default=str(DEFAULT_CORPUS))
    parser.add_argument("--cpu-threads", type=int, default=None)
    parser.add_argument("--cache", default=None, help="checkpoint cache (benchmarks/checkpoints.py)")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    quiet_offline_transformers()
    from benchmarks.throughput import prepare_checkpoints

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="relabel-"))
    workdir.mkdir(parents=True, exist_ok=True)
    args.workdir = str(workdir)
    posts, note = load_posts(args.corpus, args.n)
    checkpoints, _ = prepare_checkpoints(args, posts, workdir)
    models = dict(checkpoints)
    all_files, nine_files = workdir / "in-10", workdir / "in-9"
    for folder in (all_files, nine_files):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
    per_file = -(-len(posts) // FILES)
    for i in range(FILES):
        chunk = posts[i * per_file:(i + 1) * per_file]
        write_jsonl(chunk, all_files / f"part-{i:02d}.jsonl")
        if i < FILES - 1:
            write_jsonl(chunk, nine_files / f"part-{i:02d}.jsonl")

    threads = args.cpu_threads
    print(f"posts: {note}; {args.scale} checkpoints; {FILES} files; cpu threads: {threads or 'all'}", flush=True)
    full = label(all_files, workdir / "full", models, threads)
    print(f"full run: {full['wall_s']:.1f} s", flush=True)
    without_politics = {k: v for k, v in models.items() if k != "politics"}
    base_three = label(all_files, workdir / "base-3", without_politics, threads)
    base_nine = label(nine_files, workdir / "base-9", models, threads)

    tokens = full["manifest"]["tokens"]
    flops = {name: dense_flops(name, args.scale, n) for name, n in tokens.items()}
    total = sum(flops.values())
    late_tokens = {name: tokens[name] - base_nine["manifest"]["tokens"][name] for name in tokens}
    scenarios = [
        ("full run", None, models, all_files, 1.0),
        ("sentiment retrained", "full", {**models, "sentiment": retrained(models["sentiment"], workdir / "sentiment-2")},
         all_files, flops["sentiment"] / total),
        ("emotion retrained", "full", {**models, "emotion": retrained(models["emotion"], workdir / "emotion-2")},
         all_files, flops["emotion"] / total),
        ("classifier added (politics)", "base-3", models, all_files, flops["politics"] / total),
        ("10% late posts", "base-9", models, all_files,
         sum(dense_flops(name, args.scale, n) for name, n in late_tokens.items()) / total),
    ]
    rows = []
    for title, base, scenario_models, folder, expected in scenarios:
        if base is None:
            measured = full
        else:
            target = workdir / f"relabel-{len(rows)}"
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(workdir / base, target)
            measured = label(folder, target, scenario_models, threads, "--skip-if-done")
        manifest = measured["manifest"]
        rows.append({"scenario": title, "wall_s": round(measured["wall_s"], 2), "model_s": round(measured["model_s"], 2),
                     "wall_share": measured["wall_s"] / full["wall_s"], "model_share": measured["model_s"] / full["model_s"],
                     "expected_flops_share": expected, "inferences": manifest["inferences"],
                     "carried": manifest.get("carried"), "rows_written": manifest["rows_written"]})
        print(f"{title}: {measured['wall_s']:.1f} s", flush=True)

    print()
    print("| scenario | wall s | model s | share of full wall | share of full model time | expected (FLOPs share) | model ran on |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        ran = ", ".join(f"{k} {v:,}" for k, v in row["inferences"].items() if v)
        print(f"| {row['scenario']} | {row['wall_s']:.1f} | {row['model_s']:.1f} | {row['wall_share']:.0%} | "
              f"{row['model_share']:.0%} | {row['expected_flops_share']:.0%} | {ran or 'nothing'} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"posts": note, "scale": args.scale, "threads": threads,
                                               "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
