"""Evaluation metrics, computed from the columns the pipeline's head writes (models.heads), so a
checkpoint's reported scores are those of the labels it will produce; scikit-learn's F1,
accuracy and ROC AUC.

compute_metrics returns {"metric", "score", "overall": {...}, "per_label": {...}} (per topic for
politics; emotion adds "thresholds"); flatten / unflatten turn that into the flat scalar dict that
Trainer logs (and trackers receive) and back.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support, roc_auc_score

from models.classifiers import classifier_for
from models.classifiers.politics import CLASSES as POLITICS_CLASSES, TOPICS as POLITICS_TOPICS
from models.classifiers.sentiment import LABELS as SENTIMENT_LABELS
from models.heads import column_suffix, sigmoid
from models.training.recipes import TASK_METRIC

THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.01), 2)


def label_config(task: str, names: Sequence[str], thresholds: Sequence[float] | None = None) -> dict:
    """The part of a checkpoint's config.json that the task's head reads."""
    if task == "politics":
        config = {"id2label": {i: f"{t}_{c}" for i, (t, c) in
                               enumerate((t, c) for t in POLITICS_TOPICS for c in POLITICS_CLASSES)},
                  "topics": list(POLITICS_TOPICS)}
    else:
        config = {"id2label": dict(enumerate(names))}
    if thresholds is not None:
        config["thresholds"] = [float(t) for t in thresholds]
    return config


def head_columns(task: str, logits: np.ndarray, names: Sequence[str], thresholds=None) -> list[dict]:
    """The pipeline's output columns for these logits (models.heads, as the handler applies it)."""
    return classifier_for(task).head_for(label_config(task, names, thresholds)).to_columns(np.asarray(logits, np.float32))


def tune_thresholds(probs: np.ndarray, targets: np.ndarray, grid: Sequence[float] = THRESHOLD_GRID,
                    default: float = 0.5) -> np.ndarray:
    """One threshold per label (column): the grid value with the best F1 of `probs >= threshold`.
    Among equally good values the middle one is taken; a label with no positives keeps `default`."""
    probs, targets = np.asarray(probs, float), np.asarray(targets) > 0.5
    grid = np.asarray(grid, float)
    chosen = np.full(probs.shape[1], default, dtype=float)
    for j in range(probs.shape[1]):
        if not targets[:, j].any():
            continue
        scores = np.array([f1_score(targets[:, j], probs[:, j] >= t, zero_division=0) for t in grid])
        best = np.flatnonzero(scores >= scores.max() - 1e-12)
        chosen[j] = grid[best[len(best) // 2]]
    return chosen


def _per_class(truth: np.ndarray, pred: np.ndarray, names: Sequence[str]) -> dict[str, dict]:
    labels = list(range(len(names)))
    precision, recall, f1, support = precision_recall_fscore_support(truth, pred, labels=labels, zero_division=0)
    return {name: {"f1": float(f1[i]), "accuracy": float(np.mean((truth == i) == (pred == i))),
                   "precision": float(precision[i]), "recall": float(recall[i]), "support": int(support[i])}
            for i, name in enumerate(names)}


def compute_metrics(task: str, logits: np.ndarray, targets: np.ndarray, names: Sequence[str],
                    thresholds: np.ndarray | None = None, tune: bool = False) -> dict:
    """Metrics of a task from the head's columns for `logits` against encoded `targets`
    (models.training.data). Emotion: `tune` picks per-label thresholds on these rows first."""
    targets = np.asarray(targets)
    per_label: dict[str, dict] = {}
    overall: dict[str, float] = {}
    if task == "emotion" and tune:
        thresholds = tune_thresholds(sigmoid(np.asarray(logits, np.float32)), targets)
    columns = head_columns(task, logits, names, thresholds)
    if task == "politics":
        class_of = {c: i for i, c in enumerate(POLITICS_CLASSES)}
        pred = np.array([[class_of[row[f"politics_{t}"]] for t in names] for row in columns]).reshape(targets.shape)
        for t, topic in enumerate(names):
            truth, guess = targets[:, t], pred[:, t]
            per_label[topic] = {"f1": float(f1_score(truth, guess, average="weighted", zero_division=0)),
                                "accuracy": float(accuracy_score(truth, guess)),
                                "macro_f1": float(f1_score(truth, guess, average="macro", zero_division=0)),
                                "support_known": int(np.sum(truth != 0))}
        overall["overall_f1"] = float(np.mean([v["f1"] for v in per_label.values()]))
        overall["overall_accuracy"] = float(np.mean([v["accuracy"] for v in per_label.values()]))
        # weighted F1 (as the card's) rewards "unknown" everywhere; the macro mean shows the minority classes
        overall["overall_macro_f1"] = float(np.mean([v["macro_f1"] for v in per_label.values()]))
    elif task in ("stars", "sentiment"):
        pred = np.array([row["stars"] - 1 if task == "stars" else SENTIMENT_LABELS.index(row["sentiment"])
                         for row in columns])
        per_label = _per_class(targets, pred, names)
        overall["accuracy"] = float(accuracy_score(targets, pred))
        overall["f1"] = float(f1_score(targets, pred, average="macro", zero_division=0))
        overall["weighted_f1"] = float(f1_score(targets, pred, average="weighted", zero_division=0))
        if task == "stars":
            probs = sigmoid(np.asarray(logits, np.float32))
            present = [i for i in range(len(names)) if 0 < np.sum(targets == i) < len(targets)]
            overall["roc_auc"] = (float(np.mean([roc_auc_score(targets == i, probs[:, i]) for i in present]))
                                  if present else float("nan"))
    elif task == "emotion":
        suffixes = [column_suffix(n) for n in names]
        truth = targets > 0.5
        probs = np.array([[row[f"emotion_{s}"] for s in suffixes] for row in columns]).reshape(truth.shape)
        pred = np.array([[n in row["emotions"] for n in names] for row in columns]).reshape(truth.shape)
        thresholds = np.full(len(names), 0.5) if thresholds is None else np.asarray(thresholds, float)
        precision, recall, f1, support = precision_recall_fscore_support(truth, pred, zero_division=0)
        for j, name in enumerate(names):
            per_label[name] = {"f1": float(f1[j]), "accuracy": float(np.mean(truth[:, j] == pred[:, j])),
                               "precision": float(precision[j]), "recall": float(recall[j]),
                               "threshold": float(thresholds[j]), "support": int(support[j])}
        overall["macro_f1"] = float(f1_score(truth, pred, average="macro", zero_division=0))
        overall["macro_f1_at_0.5"] = float(f1_score(truth, probs >= 0.5, average="macro", zero_division=0))
        overall["micro_f1"] = float(f1_score(truth, pred, average="micro", zero_division=0))
        overall["exact_match"] = float(accuracy_score(truth, pred))
    else:
        raise ValueError(f"unknown task {task!r}")
    metric = TASK_METRIC[task]
    result = {"metric": metric, "score": overall[metric], "overall": overall, "per_label": per_label}
    if task == "emotion":
        result["thresholds"] = {name: float(t) for name, t in zip(names, thresholds)}
    return result


def trainer_metrics(task: str, names: Sequence[str], tune: bool, prediction) -> dict[str, float]:
    """Trainer's compute_metrics (bind the first three with functools.partial): an EvalPrediction
    of logits and encoded targets -> flatten(compute_metrics(...))."""
    return flatten(compute_metrics(task, prediction.predictions, prediction.label_ids, names,
                                   tune=tune and task == "emotion"))


def flatten(metrics: Mapping) -> dict[str, float]:
    """compute_metrics' result as flat scalars: overall names, per_label/<name>/<stat>, threshold/<name>."""
    flat = dict(metrics["overall"])
    for name, stats in metrics["per_label"].items():
        flat.update({f"per_label/{name}/{stat}": value for stat, value in stats.items()})
    for name, value in (metrics.get("thresholds") or {}).items():
        flat[f"threshold/{name}"] = value
    return flat


def unflatten(flat: Mapping, prefix: str = "eval_") -> dict:
    """A logged evaluation (flatten's keys behind `prefix`) as {"overall", "per_label", "thresholds"}."""
    overall, per_label, thresholds = {}, {}, {}
    for key, value in flat.items():
        if not key.startswith(prefix):
            continue
        key = key[len(prefix):]
        if key.startswith("per_label/"):
            name, stat = key[len("per_label/"):].rsplit("/", 1)
            per_label.setdefault(name, {})[stat] = value
        elif key.startswith("threshold/"):
            thresholds[key[len("threshold/"):]] = value
        elif key not in ("loss", "runtime", "samples_per_second", "steps_per_second", "model_preparation_time"):
            overall[key] = value
    return {"overall": overall, "per_label": per_label, "thresholds": thresholds or None}
