"""sentiment: binary, negative / positive (Text_classification_model_1_pytorch, DistilBERT).

A 2-way softmax; the checkpoint's labels may say negative/positive or LABEL_0/LABEL_1.
Columns: sentiment (string) and sentiment_score (its probability).
"""
from __future__ import annotations

from typing import Mapping, Sequence

from models.classifiers.base import Classifier
from models.heads import SINGLE_LABEL, CheckpointMismatch, Head, check_count, id2label_list, single_label_softmax

NAME = "sentiment"
LABELS = ("negative", "positive")


def sentiment_class(label) -> int | None:
    """0 (negative) or 1 (positive) from a sentiment label: negative/positive (any case, or a
    prefix such as NEG/POS), or LABEL_0/LABEL_1; None for anything else."""
    low = str(label).strip().lower()
    if low.startswith("neg"):
        return 0
    if low.startswith("pos"):
        return 1
    return {"label_0": 0, "label_1": 1}.get(low)


def head_for(config: Mapping) -> Head:
    check_count(NAME, config, len(LABELS), "negative, positive")
    labels = id2label_list(config)
    names = [None if c is None else LABELS[c] for c in map(sentiment_class, labels)]
    if sorted(n for n in names if n) != list(LABELS):
        raise CheckpointMismatch(f"classifier {NAME!r}: cannot read labels {labels} as negative/positive "
                                 "(expected negative/positive or LABEL_0/LABEL_1)")
    return single_label_softmax(NAME, names)


def label_config(names: Sequence[str] = LABELS) -> dict:
    return {"id2label": dict(enumerate(LABELS))}


CLASSIFIER = Classifier(NAME, head_for, label_config, languages=frozenset({"en"}),
                        published_checkpoint="Hansaht/Text_classification_model_1_pytorch",
                        base_model="distilbert-base-uncased", problem_type=SINGLE_LABEL,
                        tiny_architecture="distilbert", package=__name__, fixed_labels=LABELS)
