"""The training hooks: what models.training asks of a classifier, defined once here.

Each classifier's package holds them in `training.py` (models/classifiers/<name>/training.py; a
name that is not one of the published four is a generic task, models/classifiers/generic/training.py),
imported when first used through `Classifier.training`. models.training calls only these and never
branches on a classifier's name.
"""
from __future__ import annotations

from typing import Any, Mapping, Protocol, Sequence

import numpy as np

from models.classifiers import classifier_for, name_problem
from models.training.errors import TrainingSetupError


class TrainingHooks(Protocol):
    """The module `<package>.training` of a classifier."""

    PRESET: Mapping[str, Any]
    """The recipe: TrainingArguments fields (learning_rate, per_device_train_batch_size, ...) and our
    task options (max_length, eval_fraction, focal_alpha, ...); the flags' defaults under --preset published."""

    RECIPE: str
    """Where PRESET comes from, for the model card: "the recipe of `owner/model`"."""

    METRIC: str
    """The key of scores()' overall that picks the best epoch (metric_for_best_model)."""

    LOSS_OPTIONS: tuple[str, ...]
    """TrainRequest fields the loss reads (e.g. focal_alpha); they go to the card's hyperparameters."""

    def label_encoding(self, table, *, task: str, text_field: str, labels: Sequence[str] | None, problems) -> Any:
        """The file's label space and how a record becomes its target (models.training.labels.LabelEncoding),
        from a polars DataFrame of the file; `labels` is --labels. Column problems go to `problems`
        (models.training.labels.Problems)."""

    def loss(self, logits, targets, space, options: Mapping[str, Any]) -> Any:
        """The training loss (a torch scalar) of float32 logits [n, outputs] against encoded targets;
        one of the pure functions of models.training.losses. `options`: the LOSS_OPTIONS values."""

    def loss_description(self, space, options: Mapping[str, Any]) -> str:
        """The loss in words, for the model card."""

    def has_thresholds(self, space) -> bool:
        """Whether the head decides each label at a threshold: then thresholds are tuned on the eval
        split (unless --no_tune_thresholds) and stored in config.json `thresholds`."""

    def scores(self, space, columns: list[dict], logits: np.ndarray, targets: np.ndarray,
               thresholds: np.ndarray | None) -> tuple[dict[str, float], dict[str, dict]]:
        """(overall, per_label) metrics from the pipeline head's output columns for these logits
        against the encoded targets; overall holds METRIC."""


def hooks_for(task: str) -> TrainingHooks:
    """The training hooks of a task (any valid classifier name); TrainingSetupError for a name that
    cannot name a classifier."""
    problem = name_problem(task)
    if problem:
        raise TrainingSetupError(f"--task: {problem}")
    return classifier_for(task).training
