"""Heads: logits -> the output schema's label and score columns. Pure numpy.

build_head(spec, config) checks that a checkpoint's config fits the classifier and
returns a Head: its Arrow fields (the Parquet columns it fills) and a function that
turns a [n, num_labels] float array of logits into n column dicts.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np
import pyarrow as pa

from models.specs import POLITICS_CLASSES, POLITICS_TOPICS, SENTIMENT_LABELS, ClassifierSpec


class CheckpointMismatch(ValueError):
    """A checkpoint's config does not fit the classifier it was given to."""


@dataclass(frozen=True)
class Head:
    fields: tuple[pa.Field, ...]
    to_columns: Callable[[np.ndarray], list[dict]]

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


def star_number(label) -> int | None:
    """1-5 from a star label such as "Star_3", "star 3" (any case); None for anything else."""
    match = re.fullmatch(r"(?i)\s*star[_ ]?([1-5])\s*", str(label))
    return int(match.group(1)) if match else None


def sentiment_class(label) -> int | None:
    """0 (negative) or 1 (positive) from a sentiment label: negative/positive (any case, or a
    prefix such as NEG/POS), or LABEL_0/LABEL_1; None for anything else."""
    low = str(label).strip().lower()
    if low.startswith("neg"):
        return 0
    if low.startswith("pos"):
        return 1
    return {"label_0": 0, "label_1": 1}.get(low)


def id2label_list(config: Mapping) -> list[str]:
    id2label = config.get("id2label") or {}
    return [str(id2label.get(i, id2label.get(str(i), f"LABEL_{i}"))) for i in range(_num_labels(config))]


def _num_labels(config: Mapping) -> int:
    if config.get("id2label"):
        return len(config["id2label"])
    return int(config.get("num_labels", 0))


def _check_count(spec: ClassifierSpec, config: Mapping, what: str) -> None:
    found = _num_labels(config)
    if spec.num_labels is not None and found != spec.num_labels:
        raise CheckpointMismatch(
            f"classifier {spec.name!r} needs a head with {spec.num_labels} labels ({what}), "
            f"but the checkpoint's config.json has {found}"
        )
    if found < 1:
        raise CheckpointMismatch(f"classifier {spec.name!r}: the checkpoint's config.json declares no labels")


def politics_head(spec: ClassifierSpec, config: Mapping) -> Head:
    _check_count(spec, config, "12 topics x 4 classes, topic-major")
    topics = tuple(config.get("topics") or POLITICS_TOPICS)
    if tuple(topics) != POLITICS_TOPICS:
        raise CheckpointMismatch(
            f"classifier 'politics': the checkpoint's topics {list(topics)} differ from {list(POLITICS_TOPICS)}"
        )
    fields = []
    for topic in POLITICS_TOPICS:
        fields += [pa.field(f"politics_{topic}", pa.string()), pa.field(f"politics_{topic}_score", pa.float32())]
    n_topics, n_classes = len(POLITICS_TOPICS), len(POLITICS_CLASSES)

    def to_columns(logits: np.ndarray) -> list[dict]:
        probs = softmax(logits.reshape(len(logits), n_topics, n_classes))
        best = probs.argmax(-1)
        best_prob = np.take_along_axis(probs, best[..., None], -1)[..., 0]
        rows = []
        for row_best, row_prob in zip(best.tolist(), best_prob.tolist()):
            row = {}
            for t, topic in enumerate(POLITICS_TOPICS):
                row[f"politics_{topic}"] = POLITICS_CLASSES[row_best[t]]
                row[f"politics_{topic}_score"] = row_prob[t]
            rows.append(row)
        return rows

    return Head(tuple(fields), to_columns)


def stars_head(spec: ClassifierSpec, config: Mapping) -> Head:
    _check_count(spec, config, "Star_1 .. Star_5")
    labels = id2label_list(config)
    numbers = [star_number(label) for label in labels]
    stars = numbers if all(numbers) else list(range(1, len(labels) + 1))
    if sorted(stars) != [1, 2, 3, 4, 5]:
        raise CheckpointMismatch(f"classifier 'stars': labels {labels} do not name each of Star_1 .. Star_5 once")

    def to_columns(logits: np.ndarray) -> list[dict]:
        probs = sigmoid(logits)
        best = probs.argmax(-1)
        return [{"stars": stars[b], "stars_score": float(p[b])} for b, p in zip(best.tolist(), probs)]

    return Head((pa.field("stars", pa.int8()), pa.field("stars_score", pa.float32())), to_columns)


def sentiment_head(spec: ClassifierSpec, config: Mapping) -> Head:
    _check_count(spec, config, "negative, positive")
    labels = id2label_list(config)
    names = [None if c is None else SENTIMENT_LABELS[c] for c in map(sentiment_class, labels)]
    if sorted(n for n in names if n) != list(SENTIMENT_LABELS):
        raise CheckpointMismatch(
            f"classifier 'sentiment': cannot read labels {labels} as negative/positive "
            "(expected negative/positive or LABEL_0/LABEL_1)"
        )

    def to_columns(logits: np.ndarray) -> list[dict]:
        probs = softmax(logits)
        best = probs.argmax(-1)
        return [{"sentiment": names[b], "sentiment_score": float(p[b])} for b, p in zip(best.tolist(), probs)]

    return Head((pa.field("sentiment", pa.string()), pa.field("sentiment_score", pa.float32())), to_columns)


def label_thresholds(labels: list[str], config: Mapping) -> np.ndarray:
    """Per-label thresholds from config.json's `thresholds` (list or label->value), else 0.5."""
    stored = config.get("thresholds")
    if stored is None:
        return np.full(len(labels), 0.5, dtype=np.float32)
    if isinstance(stored, Mapping):
        missing = [label for label in labels if label not in stored]
        if missing:
            raise CheckpointMismatch(f"classifier 'emotion': thresholds lack labels {missing}")
        values = [stored[label] for label in labels]
    else:
        values = list(stored)
        if len(values) != len(labels):
            raise CheckpointMismatch(
                f"classifier 'emotion': {len(values)} thresholds for {len(labels)} labels"
            )
    return np.asarray(values, dtype=np.float32)


def emotion_head(spec: ClassifierSpec, config: Mapping) -> Head:
    _check_count(spec, config, "one per emotion")
    labels = id2label_list(config)
    suffixes = [column_suffix(label) for label in labels]
    if len(set(suffixes)) != len(suffixes) or not all(suffixes):
        raise CheckpointMismatch(f"classifier 'emotion': labels {labels} do not give distinct column names")
    thresholds = label_thresholds(labels, config)
    fields = [pa.field("emotions", pa.list_(pa.string()))]
    fields += [pa.field(f"emotion_{s}", pa.float32()) for s in suffixes]

    def to_columns(logits: np.ndarray) -> list[dict]:
        probs = sigmoid(logits)
        over = probs >= thresholds
        rows = []
        for row_probs, row_over in zip(probs.tolist(), over.tolist()):
            row = {"emotions": [label for label, on in zip(labels, row_over) if on]}
            row.update({f"emotion_{s}": p for s, p in zip(suffixes, row_probs)})
            rows.append(row)
        return rows

    return Head(tuple(fields), to_columns)


_HEAD_BUILDERS = {
    "grouped_softmax": politics_head,
    "multilabel_argmax": stars_head,
    "softmax": sentiment_head,
    "multilabel_threshold": emotion_head,
}


def build_head(spec: ClassifierSpec, config: Mapping) -> Head:
    """The head for a classifier, from its checkpoint's config (a dict). Raises CheckpointMismatch."""
    return _HEAD_BUILDERS[spec.head](spec, config)
