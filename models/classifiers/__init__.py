"""The classifier registry: the four published classifiers by name, and any other name as a
generic classifier defined by its checkpoint (models.classifiers.generic).

    classifier_for("emotion")   -> the published emotion classifier
    classifier_for("toxicity")  -> a generic classifier whose head comes from its checkpoint

One package per classifier holds everything it is: __init__.py (labels, head, routing,
checkpoints), training.py and report.py (its hooks, imported when used).
"""
from __future__ import annotations

from models.classifiers import emotion, politics, sentiment, stars
from models.classifiers.base import Classifier, name_problem, prefix_problems
from models.classifiers.generic import generic

# Run order of the published four (their columns' order in the output).
PUBLISHED: dict[str, Classifier] = {c.name: c for c in (politics.CLASSIFIER, stars.CLASSIFIER,
                                                        sentiment.CLASSIFIER, emotion.CLASSIFIER)}
PUBLISHED_NAMES = tuple(PUBLISHED)


def classifier_for(name: str) -> Classifier:
    """The published classifier of that name, else a generic one (check name_problem first)."""
    return PUBLISHED.get(name) or generic(name)


__all__ = ["Classifier", "PUBLISHED", "PUBLISHED_NAMES", "classifier_for", "name_problem", "prefix_problems"]
