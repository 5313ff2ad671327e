"""Fine-tuning the four classifiers on transformers' Trainer (python -m pipelines.train).

- data.py: reading JSONL/CSV/Parquet, label parsing and checks (the heads' vocabularies);
- recipes.py: the model cards' recipes as TrainingArguments defaults;
- losses.py: the four recipes' losses;
- metrics.py: metrics from the pipeline head's columns (scikit-learn), threshold tuning;
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
