"""emotion training hooks (models.training.hooks): several emotions per row, sigmoid focal loss,
macro F1 at per-label thresholds tuned on the eval split (stored in config.json).

Data: an `emotions` column (a list of names, a JSON list or an a,b string; the label set is --labels
or the sorted names found) or one 0/1 column per label (named by --labels, else every 0/1 column
besides the text and `id`). Targets [n, labels] 0/1 floats.
"""
from __future__ import annotations

import numpy as np

from models.classifiers.emotion import CLASSIFIER, LIST_COLUMN, NAME, SCORE_PREFIX
from models.heads import column_suffix
from models.training.labels import Problems, multi_label_encoding
from models.training.losses import focal_loss
from models.training.metrics import multi_label_scores

# fikriau/praktikum-ai-modul6-robertalargefocal
PRESET = dict(learning_rate=2e-5, per_device_train_batch_size=4, gradient_accumulation_steps=8, num_train_epochs=3,
              lr_scheduler_type="cosine", fp16=True, optim="adamw_8bit", seed=42, max_length=128, focal_alpha=0.25,
              focal_gamma=2.0, eval_fraction=0.1)
RECIPE = f"the recipe of `{CLASSIFIER.published_checkpoint}`"
METRIC = "macro_f1"
# pipelines.demo's settings per base (learning rate, head learning rate, epochs): sized for its few
# hundred examples on a couple of CPU cores, not the published recipe
DEMO = {"small-encoder": (0.0001, 0.002, 4), "tiny": (0.002, 0.02, 25)}
LOSS_OPTIONS = ("focal_alpha", "focal_gamma")


def label_encoding(table, *, task: str, text_field: str, labels, problems: Problems):
    return multi_label_encoding(table, NAME, LIST_COLUMN, text_field, labels, problems, find_binary_columns=True)


def loss(logits, targets, space, options):
    return focal_loss(logits, targets, alpha=options["focal_alpha"], gamma=options["focal_gamma"])


def loss_description(space, options) -> str:
    return f"sigmoid focal loss (alpha {options['focal_alpha']}, gamma {options['focal_gamma']})"


def has_thresholds(space) -> bool:
    return True


def scores(space, columns, logits, targets, thresholds):
    names = space.names
    truth = targets > 0.5
    probs = np.array([[row[f"{SCORE_PREFIX}{column_suffix(n)}"] for n in names] for row in columns]).reshape(truth.shape)
    pred = np.array([[n in row[LIST_COLUMN] for n in names] for row in columns]).reshape(truth.shape)
    return multi_label_scores(truth, pred, probs, names, thresholds)
