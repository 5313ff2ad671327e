"""Training data: a JSONL, CSV or Parquet file (local, or any URL that Beam's FileSystems opens,
such as gs:// and s3://) read with polars, each row's label checked and encoded for its task,
each text cleaned with transforms.cleaning.clean_text. Problems are collected and raised as one
TrainingDataError that names the rows and columns. The label vocabularies and parsers are the
heads' (models.classifiers, models.heads): what training accepts is what the pipeline writes.
"""
from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from models.classifiers import PUBLISHED_NAMES
from models.classifiers.politics import CLASSES as POLITICS_CLASSES, TOPICS as POLITICS_TOPICS
from models.classifiers.sentiment import LABELS as SENTIMENT_LABELS, sentiment_class
from models.classifiers.stars import LABELS as STAR_LABELS, star_number
from models.heads import column_suffix
from models.training.errors import TrainingDataError, TrainingSetupError
from transforms.cleaning import CleaningOptions, clean_text
from transforms.inputs import decompressed
from transforms.records import file_format

TASKS = PUBLISHED_NAMES
MAX_LISTED_PROBLEMS = 10


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
    """'jsonl', 'csv' or 'parquet' by the labeling pipeline's rule (transforms.records.file_format)."""
    try:
        return file_format(path)[0]
    except ValueError as exc:
        raise TrainingDataError(str(exc)) from exc


def _read_bytes(path: str) -> bytes:
    """The file's records' bytes, decompressed as the labeling pipeline would read them
    (transforms.inputs.decompressed)."""
    if "://" in path:
        from apache_beam.io.filesystem import CompressionTypes
        from apache_beam.io.filesystems import FileSystems

        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            data = handle.read()
    else:
        with open(path, "rb") as handle:
            data = handle.read()
    with decompressed(io.BufferedReader(io.BytesIO(data)), path) as stream:
        return stream.read()


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
    except Exception as exc:  # noqa: BLE001 - a decompressor's own error: EOFError (truncated gzip), LZMAError...
        raise TrainingDataError(f"{path}: cannot be decompressed ({type(exc).__name__}: {exc})") from exc
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
                number = star_number(value)
            if number not in range(1, 6):
                problems.add(row_number, "stars", f"{value!r} is not a star count 1-5")
            else:
                target = number - 1
        elif task == "sentiment":
            value = record.get("label")
            number = _int_value(value)
            if number is None and isinstance(value, str):
                number = sentiment_class(value)
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
