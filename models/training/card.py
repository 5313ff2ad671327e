"""What a finished run writes beside the checkpoint: metrics.json and the model card README.md
(huggingface_hub's ModelCard, in the layout of the MyPoliBERT card: results as a list per topic or
label, the hyperparameters, a per-epoch table).

history: one dict per evaluated epoch, {"epoch", "step", "train_loss", "eval_loss", "overall",
"per_label", "thresholds"}, built from Trainer's log_history by epoch_history.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

from models.training.metrics import unflatten


def epoch_history(log_history: list[dict]) -> list[dict]:
    """Trainer's log_history (training-loss and evaluation entries) as one entry per evaluation."""
    history, train_loss = [], None
    for entry in log_history:
        if "loss" in entry:
            train_loss = entry["loss"]
        if "eval_loss" in entry:
            history.append({"epoch": round(entry.get("epoch", 0), 2), "step": entry.get("step", 0),
                            "train_loss": train_loss, "eval_loss": entry["eval_loss"], **unflatten(entry)})
    return history


def _title(name: str) -> str:
    return name.replace("_", " ").title() if name.islower() else name


def _fmt(value) -> str:
    return "nan" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def write_report(output: Path, report: dict, history: list[dict]) -> None:
    """metrics.json (the report plus the history without per-label detail) and README.md."""
    full = {**report, "history": [{k: v for k, v in e.items() if k != "per_label"} for e in history]}
    (output / "metrics.json").write_text(json.dumps(full, indent=2, default=float) + "\n")
    model_card(report, history).save(output / "README.md")


def model_card(report: dict, history: list[dict]) -> ModelCard:
    task, hp = report["task"], report["hyperparameters"]
    best = next(e for e in history if e["step"] == report["best_step"])
    names, overall_keys = list(best["per_label"]), list(best["overall"])
    base = report["base_model"] or "an unnamed base model"
    data = ModelCardData(library_name="transformers", pipeline_tag="text-classification", tags=["label-corpus", task])
    lines = [
        f"# label-corpus {task} classifier", "",
        f"This model is a fine-tuned version of {base} for the `{task}` classifier of the label_corpus pipeline "
        f"({report['recipe']}), trained on {report['train_rows']} rows and "
        f"evaluated on {report['eval_rows']}.",
        f"It achieves the following results on the evaluation set (epoch {report['best_epoch']:g} of "
        f"{report['epochs_trained']:g}, the best by {report['metric']}):",
        f"- Loss: {_fmt(best['eval_loss'])}",
    ]
    for name in names:
        lines += [f"- {_title(name)} F1: {_fmt(best['per_label'][name]['f1'])}",
                  f"- {_title(name)} Accuracy: {_fmt(best['per_label'][name]['accuracy'])}"]
    lines += [f"- {_title(key)}: {_fmt(best['overall'][key])}" for key in overall_keys]
    if report.get("thresholds"):
        lines += ["", "Per-label decision thresholds (tuned on the evaluation set for F1, stored in config.json):", "",
                  "| Label | Threshold |", "|---|---|"]
        lines += [f"| {name} | {value:.2f} |" for name, value in report["thresholds"].items()]
    lines += ["", "## Training procedure", "", "Trained with transformers' Trainer (`python -m pipelines.train`).", "",
              "### Training hyperparameters", "", "The following hyperparameters were used during training:"]
    lines += [f"- {key}: {value}" for key, value in hp.items() if value is not None]
    lines += [f"- loss: {report['loss']}",
              f"- mixed_precision_training: {report['mixed_precision']}",
              f"- text cleaning (label_corpus_cleaning): {json.dumps(report['label_corpus_cleaning'])}",
              "", "### Training results", ""]
    header = ["Training Loss", "Epoch", "Step", "Validation Loss"]
    for name in names:
        header += [f"{_title(name)} F1", f"{_title(name)} Accuracy"]
    header += [_title(k) for k in overall_keys]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for entry in history:
        cells = [_fmt(entry["train_loss"]), f"{entry['epoch']:g}", str(entry["step"]), _fmt(entry["eval_loss"])]
        for name in names:
            per = entry["per_label"].get(name, {})
            cells += [_fmt(per.get("f1")), _fmt(per.get("accuracy"))]
        cells += [_fmt(entry["overall"].get(k)) for k in overall_keys]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "### Framework versions", "", *[f"- {k} {v}" for k, v in report["versions"].items()], ""]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines))
