"""The model cards' recipes (README "Training"), in transformers' TrainingArguments terms, and
what every run of ours sets on top of them.

PUBLISHED_PRESETS[task] holds TrainingArguments fields (learning_rate, per_device_train_batch_size,
...) and our own task options (max_length, focal_alpha, focal_gamma, eval_fraction); the entrypoint
uses them as the defaults of its flags, so any flag given on the command line wins.
"""
from __future__ import annotations

import importlib.util
import logging
from typing import Any

from models.training.errors import TrainingSetupError

LOG = logging.getLogger(__name__)

PUBLISHED_PRESETS: dict[str, dict[str, Any]] = {
    # YagiASAFAS/MyPoliBERT-ver02
    "politics": dict(learning_rate=5e-5, per_device_train_batch_size=16, gradient_accumulation_steps=2,
                     num_train_epochs=16, lr_scheduler_type="linear", fp16=True, optim="adamw_torch", seed=42,
                     eval_fraction=0.2),
    # Ayazhankad/bert-finetuned-semantic-chinese
    "stars": dict(learning_rate=2e-5, per_device_train_batch_size=8, num_train_epochs=5, lr_scheduler_type="linear",
                  optim="adamw_torch", seed=42, eval_fraction=0.2),
    # Hansaht/Text_classification_model_1_pytorch
    "sentiment": dict(learning_rate=2e-5, per_device_train_batch_size=16, num_train_epochs=5,
                      lr_scheduler_type="linear", optim="adamw_torch", seed=42, eval_fraction=0.2),
    # fikriau/praktikum-ai-modul6-robertalargefocal
    "emotion": dict(learning_rate=2e-5, per_device_train_batch_size=4, gradient_accumulation_steps=8,
                    num_train_epochs=3, lr_scheduler_type="cosine", fp16=True, optim="adamw_8bit", seed=42,
                    max_length=128, focal_alpha=0.25, focal_gamma=2.0, eval_fraction=0.1),
}
PRESETS = {"published": PUBLISHED_PRESETS}
TASK_METRIC = {"politics": "overall_f1", "stars": "f1", "sentiment": "accuracy", "emotion": "macro_f1"}

# Every run: evaluate and save each epoch, keep the best epoch by the task's metric (plus the
# last one, for --resume), one log entry per epoch, no tracker unless --report_to names one.
RUN_SETTINGS: dict[str, Any] = dict(eval_strategy="epoch", save_strategy="epoch", logging_strategy="epoch",
                                    load_best_model_at_end=True, greater_is_better=True, save_total_limit=2,
                                    per_device_eval_batch_size=64, report_to="none", remove_unused_columns=False)
BITSANDBYTES_OPTIMIZERS = ("8bit", "bnb", "paged_")


def preset_defaults(task: str, preset: str = "published") -> dict[str, Any]:
    """The flag defaults of a task under a preset: RUN_SETTINGS, the card's recipe, the metric."""
    if preset not in PRESETS:
        raise TrainingSetupError(f"unknown preset {preset!r}; known: {sorted(PRESETS)}")
    return {**RUN_SETTINGS, **PRESETS[preset][task], "metric_for_best_model": TASK_METRIC[task]}


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
