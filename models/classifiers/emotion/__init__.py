"""emotion: multi-label emotions (praktikum-ai-modul6-robertalargefocal, RoBERTa-large, focal loss).

A sigmoid per label, labels from the checkpoint's id2label, threshold 0.5 or the per-label
thresholds stored in config.json. Columns: emotions (list<string>, the labels at or over their
threshold) and emotion_<label> (each label's probability).
"""
from __future__ import annotations

from typing import Mapping, Sequence

from models.classifiers.base import Classifier
from models.heads import (MULTI_LABEL, Head, check_count, distinct_suffixes, id2label_list, label_thresholds,
                          multi_label_threshold)

NAME = "emotion"
LIST_COLUMN = "emotions"
SCORE_PREFIX = f"{NAME}_"


def head_for(config: Mapping) -> Head:
    check_count(NAME, config, None, "one per emotion")
    labels = id2label_list(config)
    distinct_suffixes(NAME, labels)
    return multi_label_threshold(LIST_COLUMN, SCORE_PREFIX, labels, label_thresholds(NAME, labels, config))


def label_config(names: Sequence[str]) -> dict:
    return {"id2label": dict(enumerate(names))}


CLASSIFIER = Classifier(NAME, head_for, label_config, languages=frozenset({"en"}),
                        published_checkpoint="fikriau/praktikum-ai-modul6-robertalargefocal",
                        base_model="roberta-large", problem_type=MULTI_LABEL,
                        tiny_architecture="roberta", package=__name__)
