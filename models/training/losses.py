"""The training losses of the four recipes (README.md, Training), as pure torch functions.

- politics: mean over the 12 topics of the cross-entropy within each topic's 4 logits
  (the 48 logits are topic-major: topic t class c is logit t*4+c);
- stars: BCE-with-logits on one-hot stars (multi_label_classification);
- sentiment: cross-entropy;
- emotion: sigmoid focal loss (alpha 0.25, gamma 2.0 in the recipe).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def grouped_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, num_classes: int = 4) -> torch.Tensor:
    """Mean over groups of the batch-mean cross-entropy within each group.

    logits: [n, groups * num_classes], group-major; targets: [n, groups] class indices."""
    n, width = logits.shape
    if width % num_classes:
        raise ValueError(f"{width} logits do not split into groups of {num_classes}")
    groups = width // num_classes
    if targets.shape != (n, groups):
        raise ValueError(f"targets of shape {tuple(targets.shape)} do not fit {groups} groups of {n} rows")
    per_group = [F.cross_entropy(logits[:, g * num_classes:(g + 1) * num_classes], targets[:, g])
                 for g in range(groups)]
    return torch.stack(per_group).mean()


def one_hot_bce(logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits against the one-hot encoding of class indices [n] (mean over all cells)."""
    targets = F.one_hot(classes.long(), logits.shape[-1]).to(logits.dtype)
    return F.binary_cross_entropy_with_logits(logits, targets)


def cross_entropy(logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, classes.long())


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0,
               reduction: str = "mean") -> torch.Tensor:
    """Sigmoid focal loss (Lin et al. 2017) on multi-label targets in {0, 1}.

    loss = alpha_t * (1 - p_t) ** gamma * BCE(p, y), with p = sigmoid(logit),
    p_t = p if y else 1 - p, alpha_t = alpha if y else 1 - alpha (alpha < 0 disables the weighting)."""
    targets = targets.to(logits.dtype)
    probs = torch.sigmoid(logits)
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = probs * targets + (1 - probs) * (1 - targets)
    loss = bce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"unknown reduction {reduction!r}")


def task_loss(task: str, logits: torch.Tensor, targets: torch.Tensor, *, focal_alpha: float = 0.25,
              focal_gamma: float = 2.0) -> torch.Tensor:
    """The recipe's loss for a task. targets as models.training.data encodes them:
    politics [n, 12] class indices; stars [n] star index 0-4; sentiment [n] class index;
    emotion [n, labels] floats in {0, 1}."""
    logits = logits.float()
    if task == "politics":
        return grouped_cross_entropy(logits, targets, num_classes=4)
    if task == "stars":
        return one_hot_bce(logits, targets)
    if task == "sentiment":
        return cross_entropy(logits, targets)
    if task == "emotion":
        return focal_loss(logits, targets, alpha=focal_alpha, gamma=focal_gamma)
    raise ValueError(f"unknown task {task!r}")
