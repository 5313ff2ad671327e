"""Fine-tuning a classifier on transformers' Trainer (python -m pipelines.train): the published four
or any other task name (a generic task). What is a task's own (label layout, loss, metric, recipe,
card text) lives in its training hooks, models/classifiers/<name>/training.py (hooks.py: the protocol).

- hooks.py: the training hook protocol and hooks_for(task);
- labels.py: label spaces, data problems, the label layouts the hooks share;
- data.py: reading JSONL/CSV/Parquet, the texts, the task's label encoding, the seeded split;
- recipes.py: the presets (the hooks' PRESET) as TrainingArguments defaults, the settings of every run;
- losses.py: the losses (pure torch functions) the hooks pick from;
- metrics.py: metrics from the pipeline head's columns (scikit-learn) by the hooks' scores, threshold tuning;
- base_models.py: the base model with a fresh head (hub id, local folder, small-encoder, tiny);
- trainer.py: the Trainer subclass (loss, head learning rate, evaluation through the handler);
- card.py: metrics.json and the model card;
- api.py: train_classifier(TrainRequest), the whole run.
"""
from models.training.api import FitResult, TrainRequest, train_classifier
from models.training.base_models import small_encoder_available
from models.training.data import TASKS, load_task_data
from models.training.errors import TrainingDataError, TrainingSetupError

__all__ = ["FitResult", "TrainRequest", "train_classifier", "small_encoder_available", "TASKS", "load_task_data",
           "TrainingDataError", "TrainingSetupError"]
