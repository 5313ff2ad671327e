"""The four classifiers as data: names, published checkpoints, heads, languages (docs/architecture.md)."""
from __future__ import annotations

from dataclasses import dataclass

POLITICS_TOPICS = (
    "democracy", "economy", "race", "leadership", "development", "corruption",
    "instability", "safety", "administration", "education", "religion", "environment",
)
POLITICS_CLASSES = ("unknown", "negative", "neutral", "positive")
SENTIMENT_LABELS = ("negative", "positive")
STAR_LABELS = tuple(f"Star_{i}" for i in range(1, 6))


@dataclass(frozen=True)
class ClassifierSpec:
    name: str
    published_checkpoint: str  # hub id the classifier mirrors; the default checkpoint
    base_model: str  # what the published model was fine-tuned from
    head: str  # one of: grouped_softmax, multilabel_argmax, softmax, multilabel_threshold
    num_labels: int | None  # None: any count, names taken from the checkpoint's id2label
    languages: frozenset[str]  # ISO 639-1 codes it was trained for: the default routing


SPECS: dict[str, ClassifierSpec] = {
    spec.name: spec
    for spec in (
        ClassifierSpec("politics", "YagiASAFAS/MyPoliBERT-ver02", "bert-base-uncased",
                       "grouped_softmax", len(POLITICS_TOPICS) * len(POLITICS_CLASSES), frozenset({"en", "ms"})),
        ClassifierSpec("stars", "Ayazhankad/bert-finetuned-semantic-chinese", "bert-base-chinese",
                       "multilabel_argmax", 5, frozenset({"zh"})),
        ClassifierSpec("sentiment", "Hansaht/Text_classification_model_1_pytorch",
                       "distilbert-base-uncased", "softmax", 2, frozenset({"en"})),
        ClassifierSpec("emotion", "fikriau/praktikum-ai-modul6-robertalargefocal", "roberta-large",
                       "multilabel_threshold", None, frozenset({"en"})),
    )
}
CLASSIFIER_NAMES = tuple(SPECS)
