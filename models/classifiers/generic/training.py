"""Training hooks of a generic task (models.training.hooks): any task name that is not one of the
published four, single-label or multi-label as its data says.

- single-label: a `label` column. Strings name the labels (the label set: --labels in that order,
  else the sorted strings found). Integers are class indices: into --labels, else the labels are
  "0" .. the largest integer (so class i of the data is id i of the checkpoint). With --labels, a
  string that is one of the names is that label, any other integer-looking value an index.
  Cross-entropy; metric macro F1 (accuracy and weighted F1 also reported).
- multi-label: a `labels` column (a list of names, a JSON list or an a,b string, as emotion accepts;
  the label set is --labels or the sorted names found), or one 0/1 column per label named by --labels.
  BCE-with-logits per label; metric macro F1 at per-label thresholds tuned on the eval split, stored in
  config.json `thresholds` with problem_type multi_label_classification, which the generic head reads.
A file with both a `label` and a `labels` column is refused. The default recipe is PRESET below
(docs/training.md, "Generic tasks").
"""
from __future__ import annotations

import numpy as np

from models.heads import MULTI_LABEL, SINGLE_LABEL, column_suffix
from models.training.labels import LabelEncoding, LabelSpace, Problems, int_value, multi_label_encoding
from models.training.losses import cross_entropy, multi_label_bce
from models.training.metrics import multi_label_scores, single_label_scores

# The usual BERT-style fine-tuning recipe (Devlin et al. 2019: lr 2e-5..5e-5, batch 16-32, 2-4 epochs),
# that of the stars and sentiment cards with 3 epochs; an 80/20 split as three of the four cards.
PRESET = dict(learning_rate=2e-5, per_device_train_batch_size=16, num_train_epochs=3, lr_scheduler_type="linear",
              optim="adamw_torch", seed=42, eval_fraction=0.2)
RECIPE = "the default recipe of a generic task"
METRIC = "macro_f1"
LOSS_OPTIONS: tuple[str, ...] = ()
LABEL_COLUMN = "label"  # single-label: one label per row
LABELS_COLUMN = "labels"  # multi-label: a list of labels per row


def label_encoding(table, *, task: str, text_field: str, labels, problems: Problems) -> LabelEncoding:
    columns = list(table.columns)
    if LABEL_COLUMN in columns and LABELS_COLUMN in columns:
        problems.add(None, None, f"both a {LABEL_COLUMN!r} column (single-label) and a {LABELS_COLUMN!r} column "
                                 "(multi-label): keep the one this task is, or rename the other")
        problems.raise_if_any()
    if LABEL_COLUMN in columns:
        return single_label_encoding(task, table.get_column(LABEL_COLUMN).to_list(), labels, problems)
    if LABELS_COLUMN in columns or labels:
        return multi_label_encoding(table, task, LABELS_COLUMN, text_field, labels, problems,
                                    find_binary_columns=False)
    problems.add(None, None, f"a generic task needs a {LABEL_COLUMN!r} column (one label per row), a "
                             f"{LABELS_COLUMN!r} column (a list of labels per row) or one 0/1 column per label "
                             f"named with --labels; columns: {columns}")
    problems.raise_if_any()


def _is_name(value, index: dict) -> bool:
    return isinstance(value, str) and value.strip() in index


def single_label_encoding(task: str, values: list, labels, problems: Problems) -> LabelEncoding:
    present = [v for v in values if v is not None]
    if labels:
        names = list(labels)
    elif present and all(int_value(v) is not None for v in present):
        numbers = [int_value(v) for v in present]
        if min(numbers) < 0:
            problems.add(None, LABEL_COLUMN, f"integer labels are class indices from 0; found {min(numbers)}")
        names = [str(i) for i in range(max(max(numbers), 0) + 1)]
    else:
        names = sorted({str(v).strip() for v in present})
    if len(names) < 2:
        problems.add(None, LABEL_COLUMN, f"a single-label task needs at least 2 labels, found {names} "
                                         "(name them with --labels)")
    if len(set(names)) != len(names):
        problems.add(None, None, f"--labels names a label twice: {names}")
    index = {name: i for i, name in enumerate(names)}

    def encode(record: dict, row: int, problems: Problems):
        value = record.get(LABEL_COLUMN)
        if _is_name(value, index):
            return index[value.strip()]
        number = int_value(value)
        if number is None:
            problems.add(row, LABEL_COLUMN, f"unknown label {value!r}; known: {', '.join(names)}")
            return None
        if number not in range(len(names)):
            problems.add(row, LABEL_COLUMN, f"integer label {number} is out of range: {len(names)} labels "
                                            f"{names} take 0-{len(names) - 1}")
            return None
        return number

    return LabelEncoding(LabelSpace(task, tuple(names), SINGLE_LABEL), encode)


def loss(logits, targets, space, options):
    if space.problem_type == MULTI_LABEL:
        return multi_label_bce(logits, targets)
    if space.problem_type == SINGLE_LABEL:
        return cross_entropy(logits, targets)
    raise ValueError(f"generic task {space.task!r}: its loss follows from its label space's problem type "
                     f"(single- or multi-label), and {space.problem_type!r} is neither")


def loss_description(space, options) -> str:
    return "BCE-with-logits per label" if space.multi_label else "cross-entropy"


def has_thresholds(space) -> bool:
    return space.multi_label


def scores(space, columns, logits, targets, thresholds):
    name, names = space.task, space.names
    if not space.multi_label:
        index = {label: i for i, label in enumerate(names)}
        return single_label_scores(targets, np.array([index[row[name]] for row in columns]), names)
    truth = targets > 0.5
    probs = np.array([[row[f"{name}_{column_suffix(n)}"] for n in names] for row in columns]).reshape(truth.shape)
    pred = np.array([[n in row[name] for n in names] for row in columns]).reshape(truth.shape)
    return multi_label_scores(truth, pred, probs, names, thresholds)
