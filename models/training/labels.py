"""Label spaces and label layouts: the building blocks the classifiers' training hooks
(models/classifiers/<name>/training.py) read their label columns with.

- LabelSpace: what a task's checkpoint predicts (its names, problem type, config.json label part);
- LabelEncoding: a task's label space plus how one record becomes its encoded target;
- Problems: data problems collected by row and column, raised at once as one TrainingDataError;
- value parsers (integer, 0/1, a list of label names) and the layouts several classifiers share:
  one class per row in a column (class_column_encoding) and several labels per row, as a list column
  or one 0/1 column per label (multi_label_encoding).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np

from models.heads import MULTI_LABEL, column_suffix
from models.training.errors import TrainingDataError

MAX_LISTED_PROBLEMS = 10


@dataclass(frozen=True)
class LabelSpace:
    """What a task's checkpoint predicts: its label names (per-topic names for a grouped head), the names
    metrics are reported per, and transformers' problem_type (None: the classifier's own)."""

    task: str
    names: tuple[str, ...]
    problem_type: Optional[str] = field(default=None)

    def __post_init__(self):
        if self.problem_type is None:
            from models.classifiers import classifier_for

            object.__setattr__(self, "problem_type", classifier_for(self.task).problem_type)

    @property
    def multi_label(self) -> bool:
        return self.problem_type == MULTI_LABEL

    def label_config(self, thresholds: Optional[Sequence[float]] = None) -> dict:
        """The part of a checkpoint's config.json that the task's head reads (id2label, topics,
        problem_type, thresholds): the classifier's own label_config, so training writes what the head reads."""
        from models.classifiers import classifier_for

        config = dict(classifier_for(self.task).label_config(self.names))
        if self.problem_type:
            config["problem_type"] = self.problem_type
        if thresholds is not None:
            config["thresholds"] = [float(t) for t in thresholds]
        return config

    @property
    def id2label(self) -> list[str]:
        id2label = self.label_config()["id2label"]
        return [str(id2label[i]) for i in range(len(id2label))]


class Problems:
    """Data problems of one file, by row (1-based) and column, raised together."""

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


# A record (a dict of the file's columns) and its 1-based row -> its encoded target, or None after
# adding the reason to the problems.
Encoder = Callable[[dict, int, Problems], Any]


@dataclass(frozen=True)
class LabelEncoding:
    space: LabelSpace
    encode: Encoder
    dtype: Any = np.int64  # class indices; multi-label 0/1 targets are float32


def int_value(value) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d+(\.0*)?\s*", value):
        return int(float(value))
    return None


def binary_value(value) -> int | None:
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return int(value.strip().lower() == "true")
    number = int_value(value)
    return number if number in (0, 1) else None


def label_names(value) -> list[str] | None:
    """A list of label names from a list, a JSON list string, or a string split at , ; or |."""
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


def check_distinct_columns(what: str, names: Sequence[str], problems: Problems) -> None:
    """Multi-label names must give distinct output columns (<name>_<label suffix>)."""
    suffixes = [column_suffix(n) for n in names]
    if not names:
        problems.add(None, None, f"no {what} labels found")
    elif len(set(suffixes)) != len(suffixes) or not all(suffixes):
        problems.add(None, None, f"labels {', '.join(names)} do not give distinct output column names")


def class_column_encoding(space: LabelSpace, column: str, parse: Callable[[Any], int | None], what: str) -> LabelEncoding:
    """One class per row in `column`: parse(value) -> a class index into space's classes, or None
    (then the row is reported with `what`, the accepted values)."""
    def encode(record: dict, row: int, problems: Problems):
        value = record.get(column)
        number = parse(value)
        if number is None:
            problems.add(row, column, f"{value!r} is not {what}")
        return number

    return LabelEncoding(space, encode)


def multi_label_encoding(table, task: str, list_column: str, text_field: str, labels: Sequence[str] | None,
                         problems: Problems, find_binary_columns: bool) -> LabelEncoding:
    """Several labels per row, in one of two layouts:
    - `list_column`: a list of label names (a list, a JSON list or an a,b string); the label set is
      `labels`, else the sorted names found in the file;
    - one 0/1 column per label: the columns `labels` names (any case), or, with find_binary_columns
      and no `labels`, every column other than the text and `id` whose values are all 0/1.
    Targets are float32 0/1 per label."""
    columns = list(table.columns)
    if list_column in columns:
        if labels:
            names = list(labels)
        else:
            found = set()
            for value in table.get_column(list_column).to_list():
                found.update(label_names(value) or [])
            names = sorted(found)
        layout: Any = "list"
    elif labels:
        by_lower = {c.lower(): c for c in columns}
        missing = [label for label in labels if label.lower() not in by_lower]
        if missing:
            problems.add(None, None, f"no {list_column!r} column, and no 0/1 column for label(s) {', '.join(missing)} "
                                     f"(columns: {', '.join(columns)})")
        names, layout = list(labels), {label: by_lower.get(label.lower()) for label in labels}
    elif find_binary_columns:
        names = []
        for column in columns:
            values = [v for v in table.get_column(column).to_list() if v is not None] if column not in (
                text_field, "id") else []
            if values and all(binary_value(v) is not None for v in values):
                names.append(column)
        if not names:
            problems.add(None, None, f"{task} data needs a {list_column!r} column (a list of label names) or one 0/1 "
                                     f"column per label (name them with --labels); columns: {columns}")
        layout = {c: c for c in names}
    else:
        raise ValueError("multi_label_encoding needs a list column, --labels or find_binary_columns")
    check_distinct_columns(task, names, problems)
    index = {name: i for i, name in enumerate(names)}

    def encode(record: dict, row: int, problems: Problems):
        target = [0.0] * len(names)
        if layout == "list":
            value = record.get(list_column)
            found = label_names(value)
            if found is None:
                problems.add(row, list_column, f"{value!r} is not a list of label names")
                return None
            unknown = [name for name in found if name not in index]
            if unknown:
                problems.add(row, list_column,
                             f"unknown label(s) {', '.join(map(str, unknown))}; known: {', '.join(names)}")
                return None
            for name in found:
                target[index[name]] = 1.0
            return target
        for name, column in layout.items():
            value = record.get(column)
            bit = binary_value(value)
            if bit is None:
                problems.add(row, column, f"{value!r} is not 0 or 1")
                return None
            target[index[name]] = float(bit)
        return target

    return LabelEncoding(LabelSpace(task, tuple(names), MULTI_LABEL), encode, np.float32)
