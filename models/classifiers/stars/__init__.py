"""stars: Chinese reviews, 1-5 stars (bert-finetuned-sentiment-chinese, BERT).

The published checkpoint is multi_label_classification with id2label Star_1..Star_5 (a sigmoid
per star); the star is the arg-max. Columns: stars (int8) and stars_score (its probability).
"""
from __future__ import annotations

import re
from typing import Mapping, Sequence

import pyarrow as pa

from models.classifiers.base import Classifier
from models.heads import MULTI_LABEL, CheckpointMismatch, Head, check_count, id2label_list, multi_label_argmax

NAME = "stars"
STARS = (1, 2, 3, 4, 5)
LABELS = tuple(f"Star_{i}" for i in STARS)


def star_number(label) -> int | None:
    """1-5 from a star label such as "Star_3", "star 3" (any case); None for anything else."""
    match = re.fullmatch(r"(?i)\s*star[_ ]?([1-5])\s*", str(label))
    return int(match.group(1)) if match else None


def head_for(config: Mapping) -> Head:
    check_count(NAME, config, len(STARS), "Star_1 .. Star_5")
    labels = id2label_list(config)
    numbers = [star_number(label) for label in labels]
    stars = numbers if all(numbers) else list(range(1, len(labels) + 1))
    if sorted(stars) != list(STARS):
        raise CheckpointMismatch(f"classifier {NAME!r}: labels {labels} do not name each of Star_1 .. Star_5 once")
    return multi_label_argmax(NAME, stars, pa.int8())


def label_config(names: Sequence[str] = LABELS) -> dict:
    return {"id2label": dict(enumerate(LABELS))}


CLASSIFIER = Classifier(NAME, head_for, label_config, languages=frozenset({"zh"}),
                        published_checkpoint="Ayazhankad/bert-finetuned-semantic-chinese",
                        base_model="bert-base-chinese", problem_type=MULTI_LABEL,
                        tiny_architecture="bert-cased", package=__name__, fixed_labels=LABELS)
