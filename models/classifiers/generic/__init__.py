"""A classifier defined by its checkpoint alone (`--model NAME=CHECKPOINT` with a name that is not
one of the published four): any AutoModelForSequenceClassification checkpoint.

- problem_type multi_label_classification: `NAME` (list<string>, the labels at or over their
  thresholds: config.json's `thresholds` as for emotion, else 0.5) and `NAME_<label>` (float32 each);
- otherwise (single-label): `NAME` (string, the arg-max label from id2label) and `NAME_score` (float32).
Every language, unless config.json's `label_corpus_languages` or `--languages NAME=CODES` says otherwise.
"""
from __future__ import annotations

from typing import Mapping, Sequence

from models.classifiers.base import Classifier
from models.heads import (MULTI_LABEL, CheckpointMismatch, Head, check_count, distinct_suffixes, id2label_list,
                          is_multi_label, label_thresholds, multi_label_threshold, single_label_softmax)



def generic_head(name: str, config: Mapping) -> Head:
    check_count(name, config, None, "any count")
    labels = id2label_list(config)
    if is_multi_label(config):
        distinct_suffixes(name, labels)
        return multi_label_threshold(name, f"{name}_", labels, label_thresholds(name, labels, config))
    if len(set(labels)) != len(labels):
        raise CheckpointMismatch(f"classifier {name!r}: id2label names a label twice ({', '.join(map(str, labels))})")
    return single_label_softmax(name, labels)


def label_config(names: Sequence[str], multi_label: bool = False) -> dict:
    config = {"id2label": dict(enumerate(names))}
    if multi_label:
        config["problem_type"] = MULTI_LABEL
    return config


def generic(name: str) -> Classifier:
    return Classifier(name, head_for=lambda config: generic_head(name, config), label_config=label_config)
