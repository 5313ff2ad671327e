"""The model cards' recipes (README "Training"), in transformers' TrainingArguments terms, and
what every run of ours sets on top of them.

PUBLISHED_PRESETS[task] is the PRESET of the task's training hooks (models/classifiers/<name>/training.py):
TrainingArguments fields (learning_rate, per_device_train_batch_size, ...) and our own task options
(max_length, focal_alpha, focal_gamma, eval_fraction); the entrypoint uses them as the defaults of its
flags, so any flag given on the command line wins.
"""
from __future__ import annotations

import importlib.util
import logging
from typing import Any, Iterator, Mapping

from models.classifiers import PUBLISHED_NAMES
from models.training.errors import TrainingSetupError
from models.training.hooks import hooks_for

LOG = logging.getLogger(__name__)

class _TaskPresets(Mapping):
    """task -> its recipe, the PRESET of its training hooks (the published four: their model cards';
    any other task: the generic default). Iterates over the published four."""

    def __getitem__(self, task: str) -> dict[str, Any]:
        return dict(hooks_for(task).PRESET)

    def __iter__(self) -> Iterator[str]:
        return iter(PUBLISHED_NAMES)

    def __len__(self) -> int:
        return len(PUBLISHED_NAMES)


PUBLISHED_PRESETS: Mapping[str, dict[str, Any]] = _TaskPresets()
PRESETS = {"published": PUBLISHED_PRESETS}


def task_metric(task: str) -> str:
    """The metric that picks a task's best epoch (its hooks' METRIC)."""
    return hooks_for(task).METRIC


# Every run: evaluate and save each epoch, keep the best epoch by the task's metric (plus the
# last one, for --resume), one log entry per epoch, no tracker unless --report_to names one.
RUN_SETTINGS: dict[str, Any] = dict(eval_strategy="epoch", save_strategy="epoch", logging_strategy="epoch",
                                    load_best_model_at_end=True, greater_is_better=True, save_total_limit=2,
                                    per_device_eval_batch_size=64, report_to="none", remove_unused_columns=False)
BITSANDBYTES_OPTIMIZERS = ("8bit", "bnb", "paged_")


def preset_defaults(task: str, preset: str = "published") -> dict[str, Any]:
    """The flag defaults of a task under a preset: RUN_SETTINGS, the card's recipe, the metric."""
    if preset not in PRESETS:
        raise TrainingSetupError(f"unknown preset {preset!r}; known: {', '.join(sorted(PRESETS))}")
    return {**RUN_SETTINGS, **PRESETS[preset][task], "metric_for_best_model": task_metric(task)}


def nearest_optimizer(optim: str, cuda: bool) -> str:
    """`optim` when it can run here; for a bitsandbytes optimizer without bitsandbytes or without
    a CUDA GPU, torch's AdamW (what adamw_8bit approximates), with a warning that says why."""
    if not any(part in optim for part in BITSANDBYTES_OPTIMIZERS):
        return optim
    if importlib.util.find_spec("bitsandbytes") is None:
        LOG.warning("optimizer %s needs bitsandbytes (pip install '.[bnb]'), which is not installed; using "
                    "adamw_torch, the 32-bit AdamW it approximates", optim)
        return "adamw_torch"
    if not cuda:
        LOG.warning("optimizer %s runs on a CUDA GPU; training on CPU with adamw_torch, the 32-bit AdamW it "
                    "approximates", optim)
        return "adamw_torch"
    return optim
