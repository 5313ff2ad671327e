"""sentiment training hooks (models.training.hooks): a `label` column holding 0/1 or
negative/positive, cross-entropy, accuracy as the card's metric (macro and weighted F1 also reported).

Targets [n] class index.
"""
from __future__ import annotations

import numpy as np

from models.classifiers.sentiment import CLASSIFIER, LABELS, NAME, sentiment_class
from models.training.labels import LabelSpace, Problems, class_column_encoding, int_value
from models.training.losses import cross_entropy
from models.training.metrics import single_label_scores

# Hansaht/Text_classification_model_1_pytorch
PRESET = dict(learning_rate=2e-5, per_device_train_batch_size=16, num_train_epochs=5, lr_scheduler_type="linear",
              optim="adamw_torch", seed=42, eval_fraction=0.2)
RECIPE = f"the recipe of `{CLASSIFIER.published_checkpoint}`"
METRIC = "accuracy"
# pipelines.demo's settings per base (learning rate, head learning rate, epochs): sized for its few
# hundred examples on a couple of CPU cores, not the published recipe
DEMO = {"small-encoder": (0.0001, 0.002, 3), "tiny": (0.002, 0.02, 15)}
LOSS_OPTIONS: tuple[str, ...] = ()
COLUMN = "label"


def class_index(value) -> int | None:
    number = int_value(value)
    if number is None and isinstance(value, str):
        number = sentiment_class(value)
    return number if number in range(len(LABELS)) else None


def label_encoding(table, *, task: str, text_field: str, labels, problems: Problems):
    if COLUMN not in table.columns:
        problems.add(None, COLUMN, f"missing; {NAME} data needs a {COLUMN!r} column holding 0/1 or "
                                   f"{'/'.join(LABELS)} (columns: {', '.join(table.columns)})")
    return class_column_encoding(LabelSpace(NAME, LABELS), COLUMN, class_index,
                                 f"a {NAME} label: use 0/1 or {'/'.join(LABELS)}")


def loss(logits, targets, space, options):
    return cross_entropy(logits, targets)


def loss_description(space, options) -> str:
    return "cross-entropy"


def has_thresholds(space) -> bool:
    return False


def scores(space, columns, logits, targets, thresholds):
    pred = np.array([LABELS.index(row[NAME]) for row in columns])
    shared, per_label = single_label_scores(targets, pred, space.names)
    return {"accuracy": shared["accuracy"], "f1": shared["macro_f1"], "weighted_f1": shared["weighted_f1"]}, per_label
