"""The training losses, as pure torch functions; each classifier's training hooks pick one
(models/classifiers/<name>/training.py `loss`):

- grouped_cross_entropy: the mean over groups of the cross-entropy within each group's logits
  (a grouped softmax head, group-major);
- one_hot_bce: BCE-with-logits on one-hot classes (a sigmoid per class, one class per row);
- cross_entropy: one class per row, softmax;
- multi_label_bce: BCE-with-logits on 0/1 targets per label;
- focal_loss: sigmoid focal loss on 0/1 targets per label.
task_loss(task, ...) is the task's hook applied.
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


def multi_label_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits on multi-label targets in {0, 1} (mean over all cells)."""
    return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype))


def task_loss(task: str, logits: torch.Tensor, targets: torch.Tensor, *, focal_alpha: float = 0.25,
              focal_gamma: float = 2.0, space=None) -> torch.Tensor:
    """The loss of a task's training hooks, on float32 logits, for targets as its label encoding
    gives them. `space` (models.training.labels.LabelSpace): the task's label space; a generic task
    needs it (its problem type picks the loss), a published one has a fixed one."""
    from models.training.hooks import hooks_for
    from models.training.labels import LabelSpace

    space = space or LabelSpace(task, ())
    return hooks_for(task).loss(logits.float(), targets, space, dict(focal_alpha=focal_alpha, focal_gamma=focal_gamma))
