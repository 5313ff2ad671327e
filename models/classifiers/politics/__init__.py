"""politics: 12 Malaysian political topics x 4 sentiment classes (MyPoliBERT, BERT).

The published checkpoint's head layout is undocumented: a 48-logit sequence-classification head in
topic-major order (topic 0 classes 0-3, topic 1 classes 0-3, ...) is accepted, anything else refused.
Columns: politics_<topic> (class) and politics_<topic>_score (its probability).
"""
from __future__ import annotations

from typing import Mapping, Sequence

from models.classifiers.base import Classifier
from models.heads import CheckpointMismatch, Head, check_count, grouped_softmax

NAME = "politics"
TOPICS = (
    "democracy", "economy", "race", "leadership", "development", "corruption",
    "instability", "safety", "administration", "education", "religion", "environment",
)
CLASSES = ("unknown", "negative", "neutral", "positive")
COLUMN_PREFIX = f"{NAME}_"


def topic_column(topic: str) -> str:
    return f"{COLUMN_PREFIX}{topic}"


def head_for(config: Mapping) -> Head:
    check_count(NAME, config, len(TOPICS) * len(CLASSES), "12 topics x 4 classes, topic-major")
    topics = tuple(config.get("topics") or TOPICS)
    if topics != TOPICS:
        raise CheckpointMismatch(f"classifier {NAME!r}: the checkpoint's topics ({', '.join(map(str, topics))}) "
                                 f"differ from {', '.join(TOPICS)}")
    return grouped_softmax(COLUMN_PREFIX, TOPICS, CLASSES)


def label_config(names: Sequence[str] = TOPICS) -> dict:
    return {"id2label": {i: f"{t}_{c}" for i, (t, c) in enumerate((t, c) for t in TOPICS for c in CLASSES)},
            "topics": list(TOPICS)}


CLASSIFIER = Classifier(NAME, head_for, label_config, languages=frozenset({"en", "ms"}),
                        published_checkpoint="YagiASAFAS/MyPoliBERT-ver02", base_model="bert-base-uncased",
                        tiny_architecture="bert", package=__name__, fixed_labels=TOPICS)
