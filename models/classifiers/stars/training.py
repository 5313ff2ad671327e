"""stars training hooks (models.training.hooks): a `stars` column holding 1-5 (or Star_3, "star 3"),
BCE-with-logits on one-hot stars (the card's multi_label_classification), the star as the arg-max.

Targets [n] star index 0-4. Metrics: accuracy, macro F1 (the card's F1), weighted F1, ROC AUC.
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from models.classifiers.stars import CLASSIFIER, LABELS, NAME, STARS, star_number
from models.heads import sigmoid
from models.training.labels import LabelSpace, Problems, class_column_encoding, int_value
from models.training.losses import one_hot_bce
from models.training.metrics import single_label_scores

# Ayazhankad/bert-finetuned-semantic-chinese
PRESET = dict(learning_rate=2e-5, per_device_train_batch_size=8, num_train_epochs=5, lr_scheduler_type="linear",
              optim="adamw_torch", seed=42, eval_fraction=0.2)
RECIPE = f"the recipe of `{CLASSIFIER.published_checkpoint}`"
METRIC = "f1"
# pipelines.demo's settings per base (learning rate, head learning rate, epochs): sized for its few
# hundred examples on a couple of CPU cores, not the published recipe
DEMO = {"small-encoder": (0.0001, 0.002, 4), "tiny": (0.002, 0.02, 25)}
LOSS_OPTIONS: tuple[str, ...] = ()
COLUMN = NAME


def star_index(value) -> int | None:
    number = int_value(value)
    if number is None and isinstance(value, str):
        number = star_number(value)
    return number - 1 if number in STARS else None


def label_encoding(table, *, task: str, text_field: str, labels, problems: Problems):
    if COLUMN not in table.columns:
        problems.add(None, COLUMN, f"missing; {NAME} data needs a {COLUMN!r} column holding 1-5 "
                                   f"(columns: {', '.join(table.columns)})")
    return class_column_encoding(LabelSpace(NAME, LABELS), COLUMN, star_index, "a star count 1-5")


def loss(logits, targets, space, options):
    return one_hot_bce(logits, targets)


def loss_description(space, options) -> str:
    return "BCE-with-logits on one-hot stars"


def has_thresholds(space) -> bool:
    return False


def scores(space, columns, logits, targets, thresholds):
    pred = np.array([STARS.index(row[NAME]) for row in columns])
    shared, per_label = single_label_scores(targets, pred, space.names)
    overall = {"accuracy": shared["accuracy"], "f1": shared["macro_f1"], "weighted_f1": shared["weighted_f1"]}
    probs = sigmoid(logits)
    present = [i for i in range(len(space.names)) if 0 < np.sum(targets == i) < len(targets)]
    overall["roc_auc"] = (float(np.mean([roc_auc_score(targets == i, probs[:, i]) for i in present]))
                          if present else float("nan"))
    return overall, per_label
