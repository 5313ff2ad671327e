"""A generic classifier's report hooks (the protocol: models.classifiers.reporting). Its columns
say which kind it is: `NAME` a list<string> (multi-label, with NAME_<label> probabilities) or a
string (single-label, with NAME_score). Its labels are those its rows carry (and, multi-label, those
its NAME_<label> columns name); a label no row got is not in a single-label classifier's output.

- single-label: rows per label and their share of the labeled rows (most frequent first), the
  most confident rows per label by NAME_score;
- multi-label: rows carrying each label (share of the rows with a label list), their co-occurrence,
  the most confident rows per label by NAME_<label> among the rows carrying it.
"""
from __future__ import annotations

import pyarrow as pa

from models.classifiers import shares

KEY = "label"  # the label column of its tables


def score_column(name: str) -> str:
    return f"{name}_score"


def score_prefix(name: str) -> str:
    return f"{name}_"


def label_column(name: str) -> str:
    return name


def arrow_columns(name: str, column_names) -> list[str]:
    return [name]


def label_shares_arrow(table, name: str, column_names) -> shares.LabelShares:
    column = table[name]
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        return shares.multi_label_shares(column, score_prefix(name), column_names)
    return shares.seen_label_shares(column)


def is_multi_label(df, name: str) -> bool:
    import polars as pl

    return isinstance(df.schema[name], pl.List)


def label_table(df, name: str):
    """single-label: rows per label, share of the labeled rows; multi-label: rows carrying each label,
    share of the rows with a label list. Most frequent first, ties by label."""
    from models.classifiers import reporting

    if is_multi_label(df, name):
        return reporting.label_frequencies(df, name, score_prefix(name), KEY)
    column = df.get_column(name)
    return reporting.histogram(column, reporting.seen_labels(column))


def label_shares(df, name: str):
    return label_table(df, name)


def sections(df, name: str) -> list:
    from models.classifiers.reporting import Section, cooccurrence, cooccurrence_chart

    if not is_multi_label(df, name):
        return [Section(f"{name}_labels", f"{name}: rows per label", label_table(df, name),
                        draw=lambda section, _df: single_label_chart(section, name))]
    return [Section(f"{name}_labels", f"{name}: label frequencies (share of rows with labels)", label_table(df, name),
                    draw=lambda section, _df: multi_label_chart(section, name)),
            Section(f"{name}_cooccurrence", f"{name}: co-occurrence (rows carrying both)",
                    cooccurrence(df, name, score_prefix(name), KEY), on_terminal=False,
                    draw=lambda section, _df: cooccurrence_chart(section))]


def single_label_chart(section, name: str):
    from models.classifiers.reporting import share_chart

    return share_chart(section, xlabel=name)


def multi_label_chart(section, name: str):
    from models.classifiers.reporting import frequency_chart

    return frequency_chart(section, f"share of labeled rows carrying the {name} label")


def most_confident(df, name: str, k: int) -> list:
    import polars as pl
    from models.classifiers.reporting import multi_label_most_confident, seen_labels, top

    if is_multi_label(df, name):
        return multi_label_most_confident(df, name, score_prefix(name), k)
    return [(label, top(df, pl.col(name) == label, score_column(name), k)) for label in seen_labels(df.get_column(name))]


def uniform_warnings(df, name: str, share: float, min_rows: int) -> list[str]:
    from models.classifiers.reporting import labeled_rows, top_label_warning

    return top_label_warning(name, label_table(df, name), labeled_rows(df, name), share, min_rows)


def trend_title(name: str) -> str:
    from models.classifiers.reporting import trend_title as title

    return title(name)


def trend_style(label: str) -> dict | None:
    return None


def row_summary(row: dict, name: str) -> str | None:
    """'NAME=label 0.91', or 'NAME=a+b' for a multi-label one ('-' for none), for a line about one post."""
    value = row.get(name)
    if value is None:
        return None
    if isinstance(value, list):
        return f"{name}=" + ("+".join(value) or "-")
    return f"{name}={value} {row[score_column(name)]:.2f}"
