"""Backfilling one new classifier onto many dates (issue 28): one `--dates` run against one
single-date run per date, each as its own launch of the command line (as a scheduler starts them).

    python -m benchmarks.backfill [--dates 10] [--n 1000] [--scale tiny] [--corpus PATH]

--dates partitions of --n posts each (the shared corpus, cut into days; generated posts without
it) are first labeled with sentiment, emotion and stars (one --dates run, not timed). Then
politics is added to every date with --skip-if-done, on two copies of that dataset:

- one run: `label_corpus --dates FIRST..LAST --skip-if-done ...`;
- single runs: `label_corpus --date D --skip-if-done ...` for each date, one after the other.

Printed for each: launches, wall time (from the first launch to the last exit, interpreter start
and imports included), model loads (checkpoints read from disk by transformers' from_pretrained,
counted in each launch: per checkpoint and in all), the posts the carried classifiers' models ran
on (0: their columns are carried over) and those politics ran on; then the ratios, and whether
the two datasets hold the same rows and labels.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from benchmarks.throughput import DEFAULT_CORPUS, load_posts, quiet_offline_transformers, write_jsonl

HERE = Path(__file__).resolve().parent
BEFORE = ("sentiment", "emotion", "stars")  # the classifiers the dataset was labeled with
ADDED = "politics"  # the new one, backfilled
FIRST_DAY = date(2026, 11, 1)


def child(spec_path: str) -> None:
    """One launch of the command line (spec: its argv), with every from_pretrained counted by
    checkpoint directory; writes {"exit", "loads"} to spec["result"]."""
    from transformers import AutoModelForSequenceClassification

    spec = json.loads(Path(spec_path).read_text())
    loads: dict[str, int] = {}
    original = AutoModelForSequenceClassification.from_pretrained.__func__

    def counted(cls, path, *args, **kwargs):
        loads[os.path.basename(str(path).rstrip("/"))] = loads.get(os.path.basename(str(path).rstrip("/")), 0) + 1
        return original(cls, path, *args, **kwargs)

    AutoModelForSequenceClassification.from_pretrained = classmethod(counted)
    from pipelines.label_corpus import main

    code = main(spec["argv"])
    Path(spec["result"]).write_text(json.dumps({"exit": code, "loads": loads}))


def launch(argv: list[str], workdir: Path, name: str) -> dict:
    """A launch of the command line in a process of its own: its exit status and model loads."""
    spec = {"argv": argv, "result": str(workdir / f"result-{name}.json")}
    spec_path = workdir / f"spec-{name}.json"
    spec_path.write_text(json.dumps(spec))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.backfill", "--child", str(spec_path)], env=env,
                          cwd=str(HERE.parent), capture_output=True, text=True)
    if proc.returncode != 0 or not Path(spec["result"]).exists():
        raise SystemExit(f"{name} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(Path(spec["result"]).read_text())


def base_argv(root: Path, models: dict[str, str], names, *extra: str) -> list[str]:
    argv = ["--input", str(root.parent / "posts" / "dt={date}" / "*.jsonl"), "--output", str(root / "dt={date}"),
            "--only", ",".join(names), "--device", "cpu", *extra]
    for name in names:
        argv += ["--model", f"{name}={models[name]}"]
    return argv


def manifests(root: Path, days: list[str]) -> list[dict]:
    from transforms import partition

    return [partition.read_manifest(str(root / f"dt={day}")) for day in days]


def same_labels(one: Path, other: Path, days: list[str]) -> bool:
    """Whether the two datasets hold the same rows with the same labels (scores within 1e-5)."""
    import pyarrow.dataset as ds

    for day in days:
        tables = [ds.dataset(str(root / f"dt={day}"), format="parquet").to_table().sort_by("id")
                  for root in (one, other)]
        if tables[0].schema.names != tables[1].schema.names or tables[0].num_rows != tables[1].num_rows:
            return False
        for name in tables[0].schema.names:
            left, right = tables[0].column(name).to_pylist(), tables[1].column(name).to_pylist()
            if any(a != b and not (isinstance(a, float) and isinstance(b, float) and abs(a - b) <= 1e-5)
                   for a, b in zip(left, right)):
                return False
    return True


def figures(name: str, launches: list[dict], wall: float, found: list[dict]) -> dict:
    loads: dict[str, int] = {}
    for result in launches:
        for checkpoint, n in result["loads"].items():
            loads[checkpoint] = loads.get(checkpoint, 0) + n
    return {"method": name, "launches": len(launches), "wall_s": round(wall, 2),
            "exit": max(result["exit"] for result in launches), "loads": loads,
            "carried_inferences": sum(m["inferences"][c] for m in found for c in BEFORE),
            "added_inferences": sum(m["inferences"][ADDED] for m in found),
            "carried_rows": sum(m["provenance"][c]["carried"] for m in found for c in BEFORE)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dates", type=int, default=10)
    parser.add_argument("--n", type=int, default=1000, help="posts per date")
    parser.add_argument("--scale", choices=("tiny", "small"), default="tiny")
    parser.add_argument("--corpus", default=str(DEFAULT_CORPUS))
    parser.add_argument("--cache", default=None, help="checkpoint cache (benchmarks/checkpoints.py)")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--json", default=None, help="also write the figures here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child)
        return 0
    quiet_offline_transformers()
    from benchmarks.throughput import prepare_checkpoints

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="backfill-"))
    workdir.mkdir(parents=True, exist_ok=True)
    posts, note = load_posts(args.corpus, args.n * args.dates)
    models, _ = prepare_checkpoints(args, posts, workdir)
    days = [(FIRST_DAY + timedelta(days=i)).isoformat() for i in range(args.dates)]
    shutil.rmtree(workdir / "posts", ignore_errors=True)
    for i, day in enumerate(days):
        folder = workdir / "posts" / f"dt={day}"
        folder.mkdir(parents=True)
        write_jsonl(posts[i * args.n:(i + 1) * args.n], folder / "posts.jsonl")
    span = f"{days[0]}..{days[-1]}"
    print(f"posts: {note}, {args.n} per date; {args.dates} dates; {args.scale} checkpoints; {os.cpu_count()} cores",
          flush=True)

    base = workdir / "base"
    shutil.rmtree(base, ignore_errors=True)
    launch(base_argv(base, models, BEFORE, "--dates", span), workdir, "base")
    roots = {"one": workdir / "one-dates-run", "single": workdir / "single-date-runs"}
    for root in roots.values():
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(base, root)
    names = (*BEFORE, ADDED)

    started = time.perf_counter()
    one = [launch(base_argv(roots["one"], models, names, "--dates", span, "--skip-if-done"), workdir, "one")]
    one_wall = time.perf_counter() - started
    print(f"one --dates run: {one_wall:.1f} s", flush=True)
    started = time.perf_counter()
    single = [launch(base_argv(roots["single"], models, names, "--date", day, "--skip-if-done"), workdir,
                     f"single-{day}") for day in days]
    single_wall = time.perf_counter() - started
    print(f"{len(days)} single-date runs: {single_wall:.1f} s", flush=True)

    rows = [figures(f"one run, --dates {span}", one, one_wall, manifests(roots["one"], days)),
            figures(f"{len(days)} runs, --date D each", single, single_wall, manifests(roots["single"], days))]
    print()
    print("| backfill of politics | launches | wall s | model loads per checkpoint | model loads in all | "
          "carried classifiers' inferences | politics inferences | exit |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        per = sorted(set(row["loads"].values()))
        print(f"| {row['method']} | {row['launches']} | {row['wall_s']:.1f} | {'/'.join(map(str, per))} | "
              f"{sum(row['loads'].values())} | {row['carried_inferences']:,} ({row['carried_rows']:,} rows carried) | "
              f"{row['added_inferences']:,} | {row['exit']} |")
    same = same_labels(roots["one"], roots["single"], days)
    print(f"\nwall time: one run takes {one_wall / single_wall:.2f} of the single-date runs' "
          f"({single_wall / one_wall:.1f}x faster); the two datasets hold the same rows and labels: {same}")
    if args.json:
        Path(args.json).write_text(json.dumps({"posts": note, "per_date": args.n, "dates": args.dates,
                                               "scale": args.scale, "cores": os.cpu_count(), "rows": rows,
                                               "same_labels": same}, indent=2) + "\n")
    return 0 if same and all(row["exit"] == 0 for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
