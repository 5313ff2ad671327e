"""politics training hooks (models.training.hooks): one column per topic holding its class, the
mean over topics of the cross-entropy within each topic, metrics per topic.

Data: a column per topic, named like the topic or politics_<topic> (any case), holding the class as
0-3 or unknown/negative/neutral/positive. Targets [n, 12] class indices.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from models.classifiers.politics import CLASSES, CLASSIFIER, COLUMN_PREFIX, NAME, TOPICS, topic_column
from models.training.labels import LabelEncoding, LabelSpace, Problems, int_value
from models.training.losses import grouped_cross_entropy

# YagiASAFAS/MyPoliBERT-ver02
PRESET = dict(learning_rate=5e-5, per_device_train_batch_size=16, gradient_accumulation_steps=2, num_train_epochs=16,
              lr_scheduler_type="linear", fp16=True, optim="adamw_torch", seed=42, eval_fraction=0.2)
RECIPE = f"the recipe of `{CLASSIFIER.published_checkpoint}`"
METRIC = "overall_f1"
# pipelines.demo's settings per base (learning rate, head learning rate, epochs): sized for its few
# hundred examples on a couple of CPU cores, not the published recipe
DEMO = {"small-encoder": (0.0001, 0.002, 6), "tiny": (0.002, 0.02, 40)}
LOSS_OPTIONS: tuple[str, ...] = ()


def topic_columns(columns: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """topic -> column (named like the topic or politics_<topic>, any case); missing topics."""
    by_lower = {c.lower(): c for c in columns}
    found, missing = {}, []
    for topic in TOPICS:
        column = by_lower.get(topic) or by_lower.get(topic_column(topic))
        if column is None:
            missing.append(topic)
        else:
            found[topic] = column
    return found, missing


def label_encoding(table, *, task: str, text_field: str, labels, problems: Problems) -> LabelEncoding:
    found, missing = topic_columns(list(table.columns))
    if missing:
        problems.add(None, None, f"{NAME} needs one column per topic ({len(TOPICS)}: {', '.join(TOPICS)}); "
                                 f"found {len(found)}, missing {', '.join(missing)}")
        problems.raise_if_any()
    class_of = {name: i for i, name in enumerate(CLASSES)}

    def encode(record: dict, row: int, problems: Problems):
        target = []
        for column in found.values():
            value = record.get(column)
            number = int_value(value)
            if number is None and isinstance(value, str):
                number = class_of.get(value.strip().lower())
            if number not in range(len(CLASSES)):
                problems.add(row, column, f"{value!r} is not a class: use 0-3 or {'/'.join(CLASSES)}")
                return None
            target.append(number)
        return target

    return LabelEncoding(LabelSpace(NAME, TOPICS), encode)


def loss(logits, targets, space, options):
    return grouped_cross_entropy(logits, targets, num_classes=len(CLASSES))


def loss_description(space, options) -> str:
    return f"mean over the {len(TOPICS)} topics of the cross-entropy within each topic"


def has_thresholds(space) -> bool:
    return False


def scores(space, columns, logits, targets, thresholds):
    class_of = {c: i for i, c in enumerate(CLASSES)}
    pred = np.array([[class_of[row[f"{COLUMN_PREFIX}{t}"]] for t in space.names] for row in columns])
    pred = pred.reshape(targets.shape)
    per_label = {}
    for t, topic in enumerate(space.names):
        truth, guess = targets[:, t], pred[:, t]
        per_label[topic] = {"f1": float(f1_score(truth, guess, average="weighted", zero_division=0)),
                            "accuracy": float(accuracy_score(truth, guess)),
                            "macro_f1": float(f1_score(truth, guess, average="macro", zero_division=0)),
                            "support_known": int(np.sum(truth != 0))}
    overall = {"overall_f1": float(np.mean([v["f1"] for v in per_label.values()])),
               "overall_accuracy": float(np.mean([v["accuracy"] for v in per_label.values()])),
               # weighted F1 (as the card's) rewards "unknown" everywhere; the macro mean shows the minority classes
               "overall_macro_f1": float(np.mean([v["macro_f1"] for v in per_label.values()]))}
    return overall, per_label
