"""The whole training entrypoint as one call: train_classifier(TrainRequest) -> FitResult, for any
task: what is the task's own comes from its training hooks (models.training.hooks).

Data (models.training.data) -> model (base_models) -> TaskTrainer (trainer) with the request's
TrainingArguments, whose checkpoints go to OUTPUT/training_state/checkpoint-N (each epoch; the best
and the last are kept; --resume goes on from the last) -> the best epoch's model saved to OUTPUT
in the checkpoint format of the pipeline (config.json with labels, problem_type, topics, thresholds
and the cleaning options; tokenizer files; model.safetensors), with metrics.json and README.md (card).
"""
from __future__ import annotations

import logging
import re
import shutil
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from models.classifiers import classifier_for
from models.training.base_models import DEFAULT_BASE_MODEL, build_model, describe_base, load_saved_model
from models.training.card import epoch_history, write_report
from models.training.data import load_task_data, split_indices
from models.training.errors import TrainingDataError, TrainingSetupError
from models.training.hooks import hooks_for
from models.training.metrics import trainer_metrics
from transforms import stores
from transforms.cleaning import CleaningOptions

LOG = logging.getLogger(__name__)
STATE_DIR = "training_state"
CARD_HYPERPARAMETERS = ("learning_rate", "per_device_train_batch_size", "per_device_eval_batch_size", "seed",
                        "gradient_accumulation_steps", "optim", "weight_decay", "adam_beta1", "adam_beta2",
                        "adam_epsilon", "max_grad_norm", "lr_scheduler_type", "warmup_steps", "num_train_epochs",
                        "max_steps", "fp16", "bf16", "metric_for_best_model")


@dataclass
class TrainRequest:
    task: str
    train: str
    output: str
    training_args: object  # transformers.TrainingArguments; output_dir is set to OUTPUT/training_state
    eval: str | None = None
    base_model: str | None = None  # None: the published base of the task (models.classifiers), else DEFAULT_BASE_MODEL
    text_field: str = "text"
    labels: list[str] | None = None
    head_learning_rate: float | None = None
    max_length: int | None = None
    focal_alpha: float = 0.25  # the loss options a task's hooks may read (LOSS_OPTIONS)
    focal_gamma: float = 2.0
    eval_fraction: float = 0.2
    cleaning: CleaningOptions = field(default_factory=CleaningOptions)
    resume: bool = False
    keep_training_state: bool = False
    tune_thresholds: bool = True
    callbacks: list = field(default_factory=list)  # extra transformers TrainerCallbacks


@dataclass
class FitResult:
    output_dir: str
    best_epoch: float
    metric: str
    score: float
    history: list[dict]
    metrics: dict  # metrics.json's content


def last_checkpoint(state_dir: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(state_dir)) if state_dir.is_dir() else None


def train_classifier(request: TrainRequest) -> FitResult:
    from transformers import set_seed

    from models.training.trainer import EpochLogCallback, PadCollator, TaskDataset, TaskTrainer, max_tokens
    from models.training.trainer import pipeline_classifier

    args = request.training_args
    hooks = hooks_for(request.task)
    stores.configure()  # gs:// and s3:// data: the stores' settings from the environment (transforms/stores.py)
    try:
        stores.check([request.train, request.eval])
    except stores.StoreError as exc:
        raise TrainingDataError(str(exc)) from None
    train_data, space = load_task_data(request.task, request.train, text_field=request.text_field,
                                       labels=request.labels, cleaning=request.cleaning)
    if request.eval:
        eval_data, eval_space = load_task_data(request.task, request.eval, text_field=request.text_field,
                                               labels=list(space.names), cleaning=request.cleaning)
        if eval_space != space:
            raise TrainingDataError(f"{request.eval}: its labels ({eval_space.problem_type}: "
                                    f"{', '.join(eval_space.names)}) are not those of {request.train} "
                                    f"({space.problem_type}: {', '.join(space.names)})")
        sources = {"train": request.train, "eval": request.eval}
    else:
        train_idx, eval_idx = split_indices(len(train_data), request.eval_fraction, args.seed)
        train_data, eval_data = train_data.subset(train_idx), train_data.subset(eval_idx)
        sources = {"train": request.train,
                   "eval": f"{request.eval_fraction:.0%} of {request.train} (seed {args.seed})"}
    base = request.base_model or classifier_for(request.task).base_model or DEFAULT_BASE_MODEL
    LOG.info("%s: %d training rows, %d eval rows, labels %s, base %s", request.task, len(train_data),
             len(eval_data), ", ".join(space.names), base)

    output = Path(request.output)
    state_dir = output / STATE_DIR
    resume_from = last_checkpoint(state_dir)
    if request.resume and resume_from is None:
        raise TrainingSetupError(f"--resume: no saved training state in {state_dir} (a checkpoint-N folder is saved "
                                 "each epoch and removed when a run finishes, unless --keep_training_state)")
    if not request.resume and state_dir.exists():
        raise TrainingSetupError(f"{output} holds an unfinished run ({STATE_DIR}/): add --resume to go on with it, "
                                 "or remove that folder to start over")
    args.output_dir = str(state_dir)

    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # transformers' own bars (loading and writing weights) are noise here
    try:
        set_seed(args.seed)
        if resume_from and request.resume:
            model, tokenizer = load_saved_model(resume_from)  # the interrupted run's architecture and tokenizer
        else:
            model, tokenizer = build_model(space, base, train_data.texts, seed=args.seed)
        # training texts are cut at --max_length; evaluation cuts them where the pipeline will
        pipeline_length = max_tokens(model, tokenizer, None)
        train_tokens = pipeline_classifier(model, tokenizer, space, max_tokens(model, tokenizer, request.max_length))
        eval_tokens = pipeline_classifier(model, tokenizer, space, pipeline_length)
        trainer = TaskTrainer(
            model=model, args=args, train_dataset=TaskDataset(train_data, train_tokens),
            eval_dataset=TaskDataset(eval_data, eval_tokens), processing_class=tokenizer,
            data_collator=PadCollator(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0),
            compute_metrics=partial(trainer_metrics, space, request.tune_thresholds),
            callbacks=[EpochLogCallback(hooks.METRIC), *request.callbacks],
            space=space, max_length=pipeline_length, head_learning_rate=request.head_learning_rate,
            loss_options=loss_options(request))
        trainer.train(resume_from_checkpoint=resume_from if request.resume else None)
        history = epoch_history(trainer.state.log_history)
        if not history:
            raise TrainingSetupError("no epoch was evaluated (epochs and max steps leave nothing to do)")
        best = best_entry(history, trainer.state.best_model_checkpoint, hooks.METRIC)
        if trainer.is_world_process_zero():
            save_checkpoint(trainer.model, tokenizer, output, request, space, best.get("thresholds"))
        report = make_report(request, space, args, base, best, history, sources, len(train_data), len(eval_data))
        if trainer.is_world_process_zero():
            write_report(output, report, history)
            if not request.keep_training_state:
                shutil.rmtree(state_dir, ignore_errors=True)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    return FitResult(str(output), best["epoch"], report["metric"], report["score"], history, report)


def best_entry(history: list[dict], best_checkpoint: str | None, metric: str) -> dict:
    """The evaluation whose checkpoint Trainer kept as the best (else the best by the metric)."""
    match = re.search(r"checkpoint-(\d+)$", best_checkpoint or "")
    if match:
        for entry in history:
            if entry["step"] == int(match.group(1)):
                return entry
    return max(history, key=lambda e: e["overall"][metric])


def loss_options(request: TrainRequest) -> dict:
    """The request's options that the task's loss reads (its hooks' LOSS_OPTIONS)."""
    return {name: getattr(request, name) for name in hooks_for(request.task).LOSS_OPTIONS}


def save_checkpoint(model, tokenizer, output: Path, request: TrainRequest, space, thresholds: dict | None) -> None:
    """The checkpoint contract: config.json (labels, problem_type, topics, thresholds where the head
    decides labels at thresholds, label_corpus_cleaning), the tokenizer files, model.safetensors."""
    model.config.label_corpus_cleaning = request.cleaning.to_dict()
    if hooks_for(request.task).has_thresholds(space):
        model.config.thresholds = [float((thresholds or {}).get(name, 0.5)) for name in space.names]
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output)
    tokenizer.save_pretrained(output)


def make_report(request: TrainRequest, space, args, base: str, best: dict, history: list[dict], sources: dict,
                train_rows: int, eval_rows: int) -> dict:
    import torch
    import transformers

    hooks = hooks_for(request.task)
    metric, options = hooks.METRIC, loss_options(request)
    hyperparameters = {key: getattr(args, key) for key in CARD_HYPERPARAMETERS}
    hyperparameters["optim"] = str(getattr(args.optim, "value", args.optim))
    hyperparameters["lr_scheduler_type"] = str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type))
    hyperparameters.update(total_train_batch_size=args.per_device_train_batch_size * args.gradient_accumulation_steps
                           * max(1, args.world_size), head_learning_rate=request.head_learning_rate,
                           max_length=request.max_length)
    hyperparameters.update(options)
    return {
        "task": request.task, "problem_type": space.problem_type, "labels": list(space.names),
        "recipe": hooks.RECIPE, "loss": hooks.loss_description(space, options),
        "base_model": describe_base(base), "metric": metric,
        "score": best["overall"][metric], "best_epoch": best["epoch"], "best_step": best["step"],
        "epochs_trained": history[-1]["epoch"],
        "eval": {"eval_loss": best["eval_loss"], "overall": best["overall"], "per_label": best["per_label"]},
        "thresholds": best.get("thresholds"), "train_rows": train_rows, "eval_rows": eval_rows, "data": sources,
        "hyperparameters": hyperparameters, "device": str(args.device),
        "mixed_precision": "fp16" if args.fp16 else "bf16" if args.bf16 else "no",
        "label_corpus_cleaning": request.cleaning.to_dict(),
        "versions": {"Transformers": transformers.__version__, "Pytorch": torch.__version__},
    }
