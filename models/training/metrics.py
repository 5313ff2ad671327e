"""Evaluation metrics, computed from the columns the pipeline's head writes (models.heads), so a
checkpoint's reported scores are those of the labels it will produce; scikit-learn's F1,
accuracy and ROC AUC.

evaluate returns {"metric", "score", "overall": {...}, "per_label": {...}} (the task's `scores`
hook fills overall and per_label; a head with per-label thresholds adds "thresholds"); flatten / unflatten turn that into the flat scalar dict that
Trainer logs (and trackers receive) and back.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support, roc_auc_score

from models.classifiers import classifier_for
from models.heads import sigmoid
from models.training.hooks import hooks_for
from models.training.labels import LabelSpace

THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.01), 2)


def label_config(task: str, names: Sequence[str], thresholds: Sequence[float] | None = None,
                 problem_type: str | None = None) -> dict:
    """The part of a checkpoint's config.json that the task's head reads."""
    return LabelSpace(task, tuple(names), problem_type).label_config(thresholds)


def head_columns(space: LabelSpace, logits: np.ndarray, thresholds=None) -> list[dict]:
    """The pipeline's output columns for these logits (models.heads, as the handler applies it)."""
    head = classifier_for(space.task).head_for(space.label_config(thresholds))
    return head.to_columns(np.asarray(logits, np.float32))


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


def per_class_scores(truth: np.ndarray, pred: np.ndarray, names: Sequence[str]) -> dict[str, dict]:
    """F1, one-vs-rest accuracy, precision, recall and support of each class (class indices)."""
    labels = list(range(len(names)))
    precision, recall, f1, support = precision_recall_fscore_support(truth, pred, labels=labels, zero_division=0)
    return {name: {"f1": float(f1[i]), "accuracy": float(np.mean((truth == i) == (pred == i))),
                   "precision": float(precision[i]), "recall": float(recall[i]), "support": int(support[i])}
            for i, name in enumerate(names)}


def single_label_scores(truth: np.ndarray, pred: np.ndarray, names: Sequence[str]) -> tuple[dict, dict]:
    """(overall: accuracy, macro_f1, weighted_f1; per class) of class indices."""
    overall = {"accuracy": float(accuracy_score(truth, pred)),
               "macro_f1": float(f1_score(truth, pred, average="macro", zero_division=0)),
               "weighted_f1": float(f1_score(truth, pred, average="weighted", zero_division=0))}
    return overall, per_class_scores(truth, pred, names)


def multi_label_scores(truth: np.ndarray, pred: np.ndarray, probs: np.ndarray, names: Sequence[str],
                       thresholds: np.ndarray | None) -> tuple[dict, dict]:
    """(overall: macro_f1, macro_f1_at_0.5, micro_f1, exact_match; per label with its threshold) of
    boolean [n, labels] truth and predictions (the labels the head wrote) and the probabilities."""
    thresholds = np.full(len(names), 0.5) if thresholds is None else np.asarray(thresholds, float)
    precision, recall, f1, support = precision_recall_fscore_support(truth, pred, zero_division=0)
    per_label = {name: {"f1": float(f1[j]), "accuracy": float(np.mean(truth[:, j] == pred[:, j])),
                        "precision": float(precision[j]), "recall": float(recall[j]),
                        "threshold": float(thresholds[j]), "support": int(support[j])}
                 for j, name in enumerate(names)}
    overall = {"macro_f1": float(f1_score(truth, pred, average="macro", zero_division=0)),
               "macro_f1_at_0.5": float(f1_score(truth, probs >= 0.5, average="macro", zero_division=0)),
               "micro_f1": float(f1_score(truth, pred, average="micro", zero_division=0)),
               "exact_match": float(accuracy_score(truth, pred))}
    return overall, per_label


def evaluate(space: LabelSpace, logits: np.ndarray, targets: np.ndarray, thresholds: np.ndarray | None = None,
             tune: bool = False) -> dict:
    """Metrics of a task from the head's columns for `logits` against encoded `targets`
    (models.training.data), by the task's `scores` hook. Where the head decides labels at thresholds,
    `tune` picks per-label thresholds on these rows first, and the result holds them."""
    hooks = hooks_for(space.task)
    targets = np.asarray(targets)
    with_thresholds = hooks.has_thresholds(space)
    if with_thresholds and tune:
        thresholds = tune_thresholds(sigmoid(np.asarray(logits, np.float32)), targets)
    if with_thresholds and thresholds is None:
        thresholds = np.full(len(space.names), 0.5)
    columns = head_columns(space, logits, thresholds if with_thresholds else None)
    overall, per_label = hooks.scores(space, columns, np.asarray(logits, np.float32), targets, thresholds)
    result = {"metric": hooks.METRIC, "score": overall[hooks.METRIC], "overall": overall, "per_label": per_label}
    if with_thresholds:
        result["thresholds"] = {name: float(t) for name, t in zip(space.names, thresholds)}
    return result


def compute_metrics(task: str, logits: np.ndarray, targets: np.ndarray, names: Sequence[str],
                    thresholds: np.ndarray | None = None, tune: bool = False, problem_type: str | None = None) -> dict:
    """evaluate() for the task's label space of these names (a generic task: give its problem_type)."""
    return evaluate(LabelSpace(task, tuple(names), problem_type), logits, targets, thresholds, tune)


def trainer_metrics(space: LabelSpace, tune: bool, prediction) -> dict[str, float]:
    """Trainer's compute_metrics (bind the first two with functools.partial): an EvalPrediction
    of logits and encoded targets -> flatten(evaluate(...))."""
    return flatten(evaluate(space, prediction.predictions, prediction.label_ids, tune=tune))


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
