"""Training data: a JSONL, CSV or Parquet file (local, or any URL that Beam's FileSystems opens,
such as gs:// and s3://) read with polars, each row's label checked and encoded for its task,
each text cleaned with transforms.cleaning.clean_text, each row's label read and encoded by its
task's training hooks (models/classifiers/<name>/training.py `label_encoding`, built from the layouts
in models.training.labels). Problems are collected and raised as one TrainingDataError that names the
rows and columns.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from models.classifiers import PUBLISHED_NAMES
from models.training.errors import TrainingDataError, TrainingSetupError
from models.training.hooks import hooks_for
from models.training.labels import LabelSpace, Problems
from transforms.cleaning import CleaningOptions, clean_text
from transforms.inputs import decompressed
from transforms.records import file_format

TASKS = PUBLISHED_NAMES  # the published four; any other valid classifier name is a generic task


@dataclass
class TaskData:
    texts: list[str]  # cleaned
    targets: np.ndarray  # as the task's label_encoding encodes them: class indices [n] or [n, groups] (int64),
    # or 0/1 per label [n, labels] (float32)
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


def load_task_data(task: str, path: str, *, text_field: str = "text", labels: Sequence[str] | None = None,
                   cleaning: CleaningOptions = CleaningOptions()) -> tuple[TaskData, LabelSpace]:
    """Read, validate and encode a task's data file: the texts here, the labels by the task's
    training hooks (`label_encoding`; `labels` is --labels: a label set, or the names of 0/1 label
    columns, where the task takes them). Raises TrainingDataError naming every problem's row and column."""
    hooks = hooks_for(task)
    df = read_table(path)
    problems = Problems(path)
    columns = list(df.columns)
    if text_field not in columns:
        problems.add(None, text_field, f"missing; the file has columns {columns} (choose one with --text-field)")
        problems.raise_if_any()
    if df.height == 0:
        problems.add(None, None, "the file has no rows")
        problems.raise_if_any()
    encoding = hooks.label_encoding(df, task=task, text_field=text_field, labels=labels, problems=problems)
    problems.raise_if_any()

    texts, targets, rows = [], [], []
    for row_number, record in enumerate(df.to_dicts(), start=1):
        raw = record.get(text_field)
        if not isinstance(raw, str):
            problems.add(row_number, text_field, "missing text" if raw is None else f"not a string: {raw!r}")
            continue
        text = clean_text(raw, cleaning)
        if not text:
            problems.add(row_number, text_field, f"empty text after cleaning (raw text {raw[:60]!r})")
            continue
        target = encoding.encode(record, row_number, problems)
        if target is not None:
            texts.append(text)
            targets.append(target)
            rows.append(row_number)
    problems.raise_if_any()
    return TaskData(texts, np.asarray(targets, dtype=encoding.dtype), rows), encoding.space


def split_indices(n: int, eval_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded shuffle cut into (train, eval) index arrays; eval gets round(n * fraction), at least 1."""
    if not 0 < eval_fraction < 1:
        raise TrainingSetupError(f"the eval fraction must be between 0 and 1, not {eval_fraction}")
    if n < 2:
        raise TrainingDataError(f"{n} usable row(s): too few to hold some out for evaluation")
    order = np.random.default_rng(seed).permutation(n)
    n_eval = min(n - 1, max(1, int(round(n * eval_fraction))))
    return np.sort(order[n_eval:]), np.sort(order[:n_eval])
