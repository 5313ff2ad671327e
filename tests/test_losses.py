"""The recipes' losses against values worked out by hand."""
from __future__ import annotations

import math

import pytest
import torch

from models.training.losses import cross_entropy, focal_loss, grouped_cross_entropy, one_hot_bce, task_loss

LOGITS_2x3 = [[0.0, 2.0, -1.0], [1.0, -2.0, 0.5]]
TARGETS_2x3 = [[1, 0, 0], [0, 1, 1]]
# alpha_t * (1 - p_t)^2 * -log(p_t) per cell, alpha 0.25, gamma 2, p = sigmoid(logit):
# (0,0): y=1, p=0.5:        0.25 * 0.25 * ln 2                     = 0.043322
# (0,1): y=0, p=0.880797:   0.75 * 0.880797^2 * -ln(0.119203)     = 1.237559
# (0,2): y=0, p=0.268941:   0.75 * 0.268941^2 * -ln(0.731059)     = 0.016994
# (1,0): y=0, p=0.731059:   0.75 * 0.731059^2 * -ln(0.268941)     = 0.526401
# (1,1): y=1, p=0.119203:   0.25 * 0.880797^2 * -ln(0.119203)     = 0.412520
# (1,2): y=1, p=0.622459:   0.25 * 0.377541^2 * -ln(0.622459)     = 0.016893
FOCAL_CELLS = [[0.043322, 1.237559, 0.016994], [0.526401, 0.412520, 0.016893]]


def test_focal_loss_matches_hand_computed_cells_and_mean():
    logits, targets = torch.tensor(LOGITS_2x3), torch.tensor(TARGETS_2x3, dtype=torch.float32)
    cells = focal_loss(logits, targets, alpha=0.25, gamma=2.0, reduction="none")
    assert cells.shape == (2, 3)
    assert torch.allclose(cells, torch.tensor(FOCAL_CELLS), atol=1e-6)
    mean = focal_loss(logits, targets, alpha=0.25, gamma=2.0)
    assert mean.item() == pytest.approx(sum(map(sum, FOCAL_CELLS)) / 6, abs=1e-6)
    assert mean.item() == pytest.approx(0.375615, abs=1e-6)


def test_focal_loss_with_gamma_0_and_no_alpha_is_plain_bce():
    logits, targets = torch.tensor(LOGITS_2x3), torch.tensor(TARGETS_2x3, dtype=torch.float32)
    plain = focal_loss(logits, targets, alpha=-1, gamma=0.0)
    expected = sum(
        -math.log(1 / (1 + math.exp(-x))) if y else -math.log(1 - 1 / (1 + math.exp(-x)))
        for row, yrow in zip(LOGITS_2x3, TARGETS_2x3) for x, y in zip(row, yrow)) / 6
    assert plain.item() == pytest.approx(expected, abs=1e-6)


def test_focal_loss_down_weights_easy_examples():
    easy = focal_loss(torch.tensor([[4.0]]), torch.tensor([[1.0]]))
    hard = focal_loss(torch.tensor([[-4.0]]), torch.tensor([[1.0]]))
    assert hard > 100 * easy


def test_grouped_cross_entropy_is_the_mean_of_the_per_topic_cross_entropies():
    # two rows, two topics of four classes, topic-major
    logits = torch.tensor([[2.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, -1.0],
                           [0.0, 0.0, 3.0, 0.0, 1.0, 1.0, 1.0, 1.0]])
    targets = torch.tensor([[0, 1], [2, 3]])
    topic0 = (math.log(1 + 3 * math.exp(-2)) + math.log(1 + 3 * math.exp(-3))) / 2  # 0.239980
    topic1 = (-1 + math.log(2 + math.e + math.exp(-1)) + math.log(4)) / 2  # 1.006409
    assert topic0 == pytest.approx(0.239980, abs=1e-6) and topic1 == pytest.approx(1.006409, abs=1e-6)
    loss = grouped_cross_entropy(logits, targets, num_classes=4)
    assert loss.item() == pytest.approx((topic0 + topic1) / 2, abs=1e-6)
    assert task_loss("politics", logits, targets).item() == pytest.approx(0.623194, abs=1e-6)


def test_grouped_cross_entropy_refuses_a_misshaped_head():
    with pytest.raises(ValueError, match="groups of 4"):
        grouped_cross_entropy(torch.zeros(2, 10), torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="do not fit"):
        grouped_cross_entropy(torch.zeros(2, 8), torch.zeros(2, 3, dtype=torch.long))


def test_one_hot_bce_for_stars():
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0], [2.0, -2.0, 0.0, 0.0, 0.0]])
    stars = torch.tensor([4, 0])  # 5 stars, 1 star
    # row 0: every cell ln 2; row 1: -ln s(2) twice (the 1 at logit 2, the 0 at logit -2), ln 2 three times
    row1 = 2 * -math.log(1 / (1 + math.exp(-2))) + 3 * math.log(2)
    expected = (5 * math.log(2) + row1) / 10
    assert one_hot_bce(logits, stars).item() == pytest.approx(expected, abs=1e-6)
    assert task_loss("stars", logits, stars).item() == pytest.approx(expected, abs=1e-6)


def test_cross_entropy_for_sentiment():
    logits = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    labels = torch.tensor([1, 0])
    expected = ((-0.0 + math.log(math.e + 1)) + math.log(2)) / 2
    assert cross_entropy(logits, labels).item() == pytest.approx(expected, abs=1e-6)
    assert task_loss("sentiment", logits, labels).item() == pytest.approx(expected, abs=1e-6)


def test_task_loss_uses_focal_parameters_for_emotion():
    logits, targets = torch.tensor(LOGITS_2x3), torch.tensor(TARGETS_2x3, dtype=torch.float32)
    assert task_loss("emotion", logits, targets).item() == pytest.approx(0.375615, abs=1e-6)
    other = task_loss("emotion", logits, targets, focal_alpha=0.5, focal_gamma=1.0)
    assert other.item() == pytest.approx(focal_loss(logits, targets, 0.5, 1.0).item())
    assert other.item() != pytest.approx(0.375615, abs=1e-3)
    with pytest.raises(ValueError):
        task_loss("weather", logits, targets)
