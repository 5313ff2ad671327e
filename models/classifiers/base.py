"""What a classifier is, as data and hooks: the registry (models.classifiers) holds one per name.

A Classifier knows its default routing, its published checkpoint and base model, how a
checkpoint's config.json becomes its head (the output columns), the label part of the config.json
a checkpoint of it carries (training writes it, tiny checkpoints are built with it), and hooks for
training (models.training) and the report (pipelines.report). Product code asks the registry and
calls these; it never branches on a classifier's name.

Each classifier is a package: __init__.py (the Classifier, its labels and head), training.py (its
training hooks, the protocol in models/training/hooks.py) and report.py (its report hooks). The
hooks are imported when first used, so a labeling worker never imports what only training
(scikit-learn) or the report (polars, matplotlib) needs.
"""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence

from models.heads import Head

# A classifier's name prefixes its columns: lower-case letters, digits and '_', from a letter, as
# BigQuery, DuckDB and polars take a column name unquoted (BigQuery: at most 300 characters).
NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,62}")
# config.json key of a checkpoint that names the languages a generic classifier runs on by default
LANGUAGES_KEY = "label_corpus_languages"


@dataclass(frozen=True)
class Classifier:
    name: str
    head_for: Callable[[Mapping], Head]  # a checkpoint's config.json (dict) -> its head; CheckpointMismatch
    label_config: Callable[[Sequence[str]], dict]  # label names -> config.json's label part (id2label, ...)
    languages: Optional[frozenset[str]] = None  # the default routing; None: every language
    published_checkpoint: Optional[str] = None  # hub id of the default checkpoint; None: --model is needed
    base_model: Optional[str] = None  # what the published checkpoint was fine-tuned from
    problem_type: Optional[str] = None  # transformers' problem_type of its checkpoints, where one fits
    tiny_architecture: str = "bert"  # models.tiny_checkpoints: bert, bert-cased, distilbert or roberta
    fixed_labels: Optional[tuple[str, ...]] = None  # label names when the classifier fixes them
    package: str = "models.classifiers.generic"  # where its training.py and report.py hooks live

    @property
    def training(self) -> Any:
        """Its training hooks (the module `<package>.training`)."""
        return importlib.import_module(f"{self.package}.training")

    @property
    def report(self) -> Any:
        """Its report hooks (the module `<package>.report`)."""
        return importlib.import_module(f"{self.package}.report")

    @property
    def is_generic(self) -> bool:
        return self.published_checkpoint is None

    def languages_for(self, config: Mapping) -> Optional[frozenset[str]]:
        """The default routing of a checkpoint of this classifier: a generic classifier's
        checkpoint may name its languages in config.json; a published classifier's are fixed."""
        declared = config.get(LANGUAGES_KEY) if self.is_generic else None
        if not declared:
            return self.languages
        from transforms.language import parse_languages

        return parse_languages(declared if isinstance(declared, str) else ",".join(map(str, declared)))


def name_problem(name: str) -> Optional[str]:
    """Why `name` cannot name a classifier (its columns' prefix), or None."""
    if not NAME_PATTERN.fullmatch(name):
        return (f"classifier name {name!r} is not a valid column prefix: use lower-case letters, digits and '_', "
                "starting with a letter (at most 63 characters)")
    return None


def prefix_problems(names) -> list[str]:
    """Pairs of a run's classifiers whose columns could be taken for each other's: a classifier's
    columns start with its name and '_', so no name may start with another's name and '_'."""
    names = list(names)
    return [f"classifier name {b!r} starts with {a + '_'!r}, which prefixes classifier {a!r}'s columns: "
            f"choose a name that does not" for a in names for b in names if a != b and b.startswith(a + "_")]
