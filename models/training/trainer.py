"""transformers' Trainer for any task, sharing the labeling pipeline's code.

- TaskTrainer.compute_loss: the task's loss (its training hooks' `loss`, models.training.hooks);
- TaskTrainer.create_optimizer: the optimizer --optim names (Trainer's own choice of class and
  arguments), with the new head and the pooler in parameter groups of their own learning rate;
- TaskTrainer.evaluation_loop: the eval texts through the pipeline's LoadedClassifier (its
  tokenization, length-sorted sub-batches, padding and forward pass, models.classifier), the loss on
  those logits, and Trainer's compute_metrics (models.training.metrics.trainer_metrics: the head's
  columns) on them: the metrics a checkpoint reports are those of the labels the pipeline will write.
Training batches are tokenized by the same LoadedClassifier.tokenize (cut at --max_length) and
padded by the same models.batching.pad_sub_batch; evaluation cuts texts where the pipeline does.
"""
from __future__ import annotations

import inspect
import logging
import math
import time
from typing import Sequence

import numpy as np
import torch
from transformers import EvalPrediction, PrinterCallback, ProgressCallback, Trainer, TrainerCallback
from transformers.trainer_utils import EvalLoopOutput

from models.batching import DEFAULT_MAX_ITEMS, DEFAULT_MAX_TOKENS, pad_sub_batch
from models.classifier import LoadedClassifier
from models.runtime import PinnedStaging, autocast_dtype_for, token_limit
from models.classifiers import classifier_for
from models.training.data import TaskData
from models.training.hooks import hooks_for
from models.training.labels import LabelSpace

LOG = logging.getLogger(__name__)


def max_tokens(model, tokenizer, requested: int | None) -> int:
    """Tokens per text: the pipeline's limit (the tokenizer's, the position embeddings'), or fewer."""
    limit = token_limit(tokenizer, model.config.to_dict())
    return min(limit, requested) if requested else limit


def pipeline_classifier(model, tokenizer, space: LabelSpace, max_length: int) -> LoadedClassifier:
    """The handler's LoadedClassifier around a model being trained (on the model's device, with the
    autocast the pipeline uses there: bf16/fp16 on CUDA, fp32 on CPU)."""
    device = model.device.type
    return LoadedClassifier(
        model, tokenizer, classifier_for(space.task).head_for(space.label_config()), device, max_length,
        autocast_dtype_for(device), "token_type_ids" in inspect.signature(model.forward).parameters,
        name=space.task, max_tokens=DEFAULT_MAX_TOKENS.get(device, DEFAULT_MAX_TOKENS["cpu"]),
        max_items=DEFAULT_MAX_ITEMS.get(device, DEFAULT_MAX_ITEMS["cpu"]),
        staging=PinnedStaging() if device == "cuda" else None, onednn=device != "cpu")


class TaskDataset(torch.utils.data.Dataset):
    """Tokenized texts and their encoded targets; `texts` (cleaned) are kept for evaluation."""

    def __init__(self, data: TaskData, classifier: LoadedClassifier):
        self.texts, self.targets = data.texts, data.targets
        self.input_ids, self.token_type_ids = classifier.tokenize(data.texts)

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int) -> dict:
        item = {"input_ids": self.input_ids[i], "labels": self.targets[i]}
        if self.token_type_ids is not None:
            item["token_type_ids"] = self.token_type_ids[i]
        return item


class PadCollator:
    """Trainer's data_collator: the handler's padding (to the batch's longest text) plus the targets."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, features: list[dict]) -> dict:
        ids = [f["input_ids"] for f in features]
        types = [f["token_type_ids"] for f in features] if "token_type_ids" in features[0] else None
        arrays = pad_sub_batch(ids, types, [len(x) for x in ids], list(range(len(ids))), self.pad_id)
        batch = {name: torch.from_numpy(array) for name, array in arrays.items()}
        batch["labels"] = torch.from_numpy(np.stack([f["labels"] for f in features]))
        return batch


class TaskTrainer(Trainer):
    def __init__(self, *args, space: LabelSpace, max_length: int, head_learning_rate: float | None = None,
                 loss_options: dict | None = None, **kwargs):
        self.space, self.max_length, self.head_learning_rate = space, max_length, head_learning_rate
        self.training_hooks, self.loss_options = hooks_for(space.task), dict(loss_options or {})
        super().__init__(*args, **kwargs)
        self.model_accepts_loss_kwargs = False  # our losses are batch means: Trainer scales them for accumulation
        # Trainer prints each log dict (ours have a key per label); EpochLogCallback logs one line instead
        self.remove_callback(PrinterCallback)
        self.recent_loss = LossMeter()
        if any(type(c) is ProgressCallback for c in self.callback_handler.callbacks):
            self.remove_callback(ProgressCallback)
            self.add_callback(QuietProgressCallback)
        else:  # log mode (no terminal, or --no_progress): lines instead of bars
            self.add_callback(StepLogCallback(self.recent_loss))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        targets = inputs.pop("labels")
        outputs = model(**inputs)
        loss = self.task_loss(outputs.logits, targets)
        if model.training:
            self.recent_loss.add(loss)
        return (loss, outputs) if return_outputs else loss

    def task_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.training_hooks.loss(logits.float(), targets, self.space, self.loss_options)

    def create_optimizer(self, model=None):
        model = self.model if model is None else model
        if self.optimizer is None and self.head_learning_rate:
            decay = set(self.get_decay_parameter_names(model))
            groups = []
            for is_head in (False, True):
                for decayed in (True, False):
                    params = [p for n, p in model.named_parameters()
                              if p.requires_grad and is_head_parameter(n) == is_head and (n in decay) == decayed]
                    if params:
                        groups.append({"params": params, "weight_decay": self.args.weight_decay if decayed else 0.0,
                                       "lr": self.head_learning_rate if is_head else self.args.learning_rate})
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
            self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return super().create_optimizer(model)

    def pipeline_logits(self, texts: Sequence[str]) -> np.ndarray:
        """Logits of the model as it is now, computed by the labeling pipeline's code."""
        model = self.accelerator.unwrap_model(self.model)
        was_training = model.training
        model.eval()
        try:
            logits, failures, _ = pipeline_classifier(model, self.processing_class, self.space,
                                                      self.max_length).logits(texts)
        finally:
            model.train(was_training)
        if failures:
            raise RuntimeError(f"evaluation could not run {len(failures)} text(s): {next(iter(failures.values()))}")
        return logits

    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None,
                        metric_key_prefix="eval") -> EvalLoopOutput:
        dataset = dataloader.dataset
        logits = self.pipeline_logits(dataset.texts)
        targets = dataset.targets
        loss = float(self.task_loss(torch.from_numpy(logits), torch.from_numpy(np.ascontiguousarray(targets))))
        metrics = {"loss": loss, **self.compute_metrics(EvalPrediction(predictions=logits, label_ids=targets))}
        metrics = {f"{metric_key_prefix}_{key}": value for key, value in metrics.items()}
        return EvalLoopOutput(predictions=logits, label_ids=targets, metrics=metrics, num_samples=len(targets))


class QuietProgressCallback(ProgressCallback):
    """Trainer's progress bars without the printed log dicts (ours have a key per label)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        pass


class LossMeter:
    """The mean training loss of the batches since it was last taken (kept on the device until
    then: reading a GPU tensor waits for the GPU)."""

    def __init__(self):
        self.total, self.batches = None, 0

    def add(self, loss: torch.Tensor) -> None:
        loss = loss.detach().float()
        self.total, self.batches = loss if self.total is None else self.total + loss, self.batches + 1

    def take(self) -> float | None:
        mean = None if self.total is None else float(self.total) / self.batches
        self.total, self.batches = None, 0
        return mean


LINE_SECONDS = 30.0  # in log mode, a line at least this often
LINE_SHARE = 0.1  # and at every tenth of the steps


class StepLogCallback(TrainerCallback):
    """Log mode (stderr not a terminal, or --no_progress): an INFO line every tenth of the steps
    and at least every LINE_SECONDS, with the steps done of all, the epoch, the mean training loss
    since the last line and the time left: the steps left at the pace since the first step ended
    (model loading and the first step's warm-up are not in it; epoch-end evaluations are), from
    the third step on. Between the per-epoch evaluation lines, where a slow machine took minutes."""

    def __init__(self, recent_loss: LossMeter):
        self.recent_loss = recent_loss
        self.first: tuple[int, float] | None = None  # (step, time) when the first step of this run ended
        self.last_line = 0.0

    def on_step_end(self, args, state, control, **kwargs):
        now = time.monotonic()
        if self.first is None:
            self.first, self.last_line = (state.global_step, now), now
        every = max(1, math.ceil(state.max_steps * LINE_SHARE))
        due = state.global_step % every == 0 or now - self.last_line >= LINE_SECONDS
        if state.is_world_process_zero and (due or state.global_step >= state.max_steps):
            self.last_line = now
            LOG.info("%s", step_line(state.global_step, state.max_steps, state.epoch or 0, args.num_train_epochs,
                                     self.recent_loss.take(), *self.pace(state.global_step, now)))

    def pace(self, step: int, now: float) -> tuple[int, float]:
        """(steps, seconds) since the first step ended."""
        return step - self.first[0], now - self.first[1]


def step_line(step: int, steps: int, epoch: float, epochs: float, loss: float | None, pace_steps: int,
              pace_seconds: float) -> str:
    """'step 40/240 (epoch 1.3 of 6): loss 0.6931, about 260 s left'; the time left once the pace
    covers two steps after the first."""
    line = f"step {step:,}/{steps:,} (epoch {epoch:.1f} of {epochs:g}): loss {'n/a' if loss is None else f'{loss:.4f}'}"
    if pace_steps >= 2 and pace_seconds > 0:
        line += f", about {(steps - step) * pace_seconds / pace_steps:.0f} s left"
    return line


class EpochLogCallback(TrainerCallback):
    """One INFO line per evaluated epoch: train loss, eval loss, the task's metric."""

    def __init__(self, metric: str):
        self.metric, self.train_loss = metric, None

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" in logs:
            self.train_loss = logs["loss"]
        if f"eval_{self.metric}" in logs:
            LOG.info("epoch %.0f: train loss %s, eval loss %.4f, %s %.4f", state.epoch or 0,
                     "n/a" if self.train_loss is None else f"{self.train_loss:.4f}", logs.get("eval_loss", float("nan")),
                     self.metric, logs[f"eval_{self.metric}"])


def is_head_parameter(name: str) -> bool:
    """The classification head and the pooler that feeds it (BERT, DistilBERT, RoBERTa layouts)."""
    return name.startswith(("classifier.", "pre_classifier.")) or ".pooler." in name or name.startswith("pooler.")

