"""Heads: logits -> the output schema's label and score columns. Pure numpy.

A Head is what one classifier writes: its Arrow fields (the Parquet columns it fills, the first
of them null exactly where a row was not labeled) and a function that turns a [n, num_labels]
float array of logits into n column dicts. The four kinds below are named for what they do;
each classifier (models/classifiers/) picks one and gives it its column names and labels.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import pyarrow as pa

DEFAULT_THRESHOLD = 0.5
# transformers' problem_type values, as checkpoints' config.json carry them
MULTI_LABEL = "multi_label_classification"
SINGLE_LABEL = "single_label_classification"


class CheckpointMismatch(ValueError):
    """A checkpoint's config does not fit the classifier it was given to."""


@dataclass(frozen=True)
class Head:
    fields: tuple[pa.Field, ...]
    to_columns: Callable[[np.ndarray], list[dict]]

    @property
    def label_column(self) -> str:
        """The column that is null exactly where the row was not labeled."""
        return self.fields[0].name

    def null_columns(self) -> dict:
        return {f.name: None for f in self.fields}


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = logits - logits.max(axis=axis, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=axis, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


def column_suffix(label: str) -> str:
    """A label as a column-name suffix: lower case, runs of non-word characters -> '_'."""
    return re.sub(r"\W+", "_", str(label).strip().lower()).strip("_")


def num_labels(config: Mapping) -> int:
    if config.get("id2label"):
        return len(config["id2label"])
    return int(config.get("num_labels", 0))


def id2label_list(config: Mapping) -> list[str]:
    id2label = config.get("id2label") or {}
    return [str(id2label.get(i, id2label.get(str(i), f"LABEL_{i}"))) for i in range(num_labels(config))]


def is_multi_label(config: Mapping) -> bool:
    return config.get("problem_type") == MULTI_LABEL


def check_count(name: str, config: Mapping, expected: int | None, what: str) -> None:
    """The checkpoint declares `expected` labels (any count >= 1 when None)."""
    found = num_labels(config)
    if expected is not None and found != expected:
        raise CheckpointMismatch(f"classifier {name!r} needs a head with {expected} labels ({what}), "
                                 f"but the checkpoint's config.json has {found}")
    if found < 1:
        raise CheckpointMismatch(f"classifier {name!r}: the checkpoint's config.json declares no labels")


def distinct_suffixes(name: str, labels: Sequence[str]) -> list[str]:
    suffixes = [column_suffix(label) for label in labels]
    if len(set(suffixes)) != len(suffixes) or not all(suffixes):
        raise CheckpointMismatch(f"classifier {name!r}: labels {', '.join(map(str, labels))} do not give distinct "
                                 "column names")
    return suffixes


def label_thresholds(name: str, labels: Sequence[str], config: Mapping) -> np.ndarray:
    """Per-label thresholds from config.json's `thresholds` (list or label->value), else 0.5."""
    stored = config.get("thresholds")
    if stored is None:
        return np.full(len(labels), DEFAULT_THRESHOLD, dtype=np.float32)
    if isinstance(stored, Mapping):
        missing = [label for label in labels if label not in stored]
        if missing:
            raise CheckpointMismatch(f"classifier {name!r}: thresholds lack labels {', '.join(missing)}")
        values = [stored[label] for label in labels]
    else:
        values = list(stored)
        if len(values) != len(labels):
            raise CheckpointMismatch(f"classifier {name!r}: {len(values)} thresholds for {len(labels)} labels")
    return np.asarray(values, dtype=np.float32)


def single_label_softmax(column: str, labels: Sequence[str]) -> Head:
    """Softmax over the labels: `column` (string, the arg-max label) and `column_score` (its probability)."""
    labels = list(labels)

    def to_columns(logits: np.ndarray) -> list[dict]:
        probs = softmax(logits)
        best = probs.argmax(-1)
        return [{column: labels[b], f"{column}_score": float(p[b])} for b, p in zip(best.tolist(), probs)]

    return Head((pa.field(column, pa.string()), pa.field(f"{column}_score", pa.float32())), to_columns)


def multi_label_argmax(column: str, values: Sequence, value_type: pa.DataType) -> Head:
    """A sigmoid per label, the most probable one taken: `column` (values[arg-max], of value_type)
    and `column_score` (its sigmoid probability)."""
    values = list(values)

    def to_columns(logits: np.ndarray) -> list[dict]:
        probs = sigmoid(logits)
        best = probs.argmax(-1)
        return [{column: values[b], f"{column}_score": float(p[b])} for b, p in zip(best.tolist(), probs)]

    return Head((pa.field(column, value_type), pa.field(f"{column}_score", pa.float32())), to_columns)


def multi_label_threshold(list_column: str, score_prefix: str, labels: Sequence[str],
                          thresholds: np.ndarray) -> Head:
    """A sigmoid per label: `list_column` (list<string>, the labels at or over their threshold)
    and `<score_prefix><label suffix>` (float32, each label's probability)."""
    labels = list(labels)
    suffixes = [column_suffix(label) for label in labels]
    fields = [pa.field(list_column, pa.list_(pa.string()))]
    fields += [pa.field(f"{score_prefix}{s}", pa.float32()) for s in suffixes]

    def to_columns(logits: np.ndarray) -> list[dict]:
        probs = sigmoid(logits)
        over = probs >= thresholds
        rows = []
        for row_probs, row_over in zip(probs.tolist(), over.tolist()):
            row = {list_column: [label for label, on in zip(labels, row_over) if on]}
            row.update({f"{score_prefix}{s}": p for s, p in zip(suffixes, row_probs)})
            rows.append(row)
        return rows

    return Head(tuple(fields), to_columns)


def grouped_softmax(prefix: str, groups: Sequence[str], classes: Sequence[str]) -> Head:
    """A softmax within each group of len(classes) logits, group-major (group g class c is logit
    g * len(classes) + c): `<prefix><group>` (string, the arg-max class) and `<prefix><group>_score`."""
    groups, classes = list(groups), list(classes)
    fields = []
    for group in groups:
        fields += [pa.field(f"{prefix}{group}", pa.string()), pa.field(f"{prefix}{group}_score", pa.float32())]

    def to_columns(logits: np.ndarray) -> list[dict]:
        probs = softmax(logits.reshape(len(logits), len(groups), len(classes)))
        best = probs.argmax(-1)
        best_prob = np.take_along_axis(probs, best[..., None], -1)[..., 0]
        rows = []
        for row_best, row_prob in zip(best.tolist(), best_prob.tolist()):
            row = {}
            for g, group in enumerate(groups):
                row[f"{prefix}{group}"] = classes[row_best[g]]
                row[f"{prefix}{group}_score"] = row_prob[g]
            rows.append(row)
        return rows

    return Head(tuple(fields), to_columns)
