"""What the classifiers' pyarrow label-share hooks (`label_shares_arrow`, models.classifiers.reporting)
have in common. pyarrow alone: the labeling job computes the summary's label lines with these where
polars and matplotlib are not installed."""
from __future__ import annotations

from typing import Iterable, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from models.heads import column_suffix

# (label, count, share) for each label of a classifier
LabelShares = list[tuple[str, int, float]]


def share(count: int, total: int) -> float:
    return count / total if total else 0.0


def count_equal(column: pa.ChunkedArray, value) -> int:
    return pc.sum(pc.equal(column, value)).as_py() or 0


def labeled_rows(column: pa.ChunkedArray) -> int:
    return len(column) - column.null_count


def by_count(counts: dict[str, int]) -> list[tuple[str, int]]:
    """Most frequent first, ties by label: the order of a table whose labels the data names."""
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def fixed_label_shares(column: pa.ChunkedArray, values: Sequence) -> LabelShares:
    """Rows per value (in the order given) and their share of the rows with a label."""
    labeled = labeled_rows(column)
    return [(str(v), n, share(n, labeled)) for v in values for n in [count_equal(column, v)]]


def seen_label_shares(column: pa.ChunkedArray) -> LabelShares:
    """A single-label column whose labels are those the rows carry: rows per label, most frequent
    first, and their share of the rows with a label."""
    counts = {item["values"]: item["counts"] for item in pc.value_counts(column.drop_null()).to_pylist()}
    labeled = labeled_rows(column)
    return [(label, n, share(n, labeled)) for label, n in by_count(counts)]


def multi_label_counts(labels: pa.ChunkedArray, score_prefix: str, column_names: Iterable[str]) -> list[tuple[str, int]]:
    """(label, rows carrying it) of a list<string> label column, most frequent first (ties by name):
    the labels seen, then those only a `<score_prefix><label>` column names (no row reached their
    threshold), at 0."""
    flat = pa.table({"row": pc.list_parent_indices(labels), "label": pc.list_flatten(labels)})
    flat = flat.filter(pc.is_valid(flat["label"]))
    grouped = flat.group_by("label").aggregate([("row", "count_distinct")]).to_pydict()
    counts = dict(zip(grouped["label"], grouped["row_count_distinct"]))
    covered = {column_suffix(label) for label in counts}
    for name in column_names:
        if name.startswith(score_prefix) and name[len(score_prefix):] not in covered:
            counts.setdefault(name[len(score_prefix):], 0)
    return by_count(counts)


def multi_label_shares(labels: pa.ChunkedArray, score_prefix: str, column_names: Iterable[str]) -> LabelShares:
    """Rows carrying each label and their share of the rows with a label list."""
    labeled = labeled_rows(labels)
    return [(label, n, share(n, labeled)) for label, n in multi_label_counts(labels, score_prefix, column_names)]
