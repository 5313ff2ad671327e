"""The report hooks of a classifier, and the building blocks its package's report.py shares.

Each classifier package's report.py (`Classifier.report`) is a module with these functions; `name`
is the classifier's name (a generic classifier's columns are named after it), `df` a polars
DataFrame of a partition's rows, `table` a pyarrow Table, `column_names` every column the
partition's files have:

    label_column(name) -> str
        the column that is null exactly where the classifier labeled no row: a partition has the
        classifier's columns when it has this one, and its nulls are the rows left unlabeled
    arrow_columns(name, column_names) -> list[str]
        the columns label_shares_arrow reads (those of column_names it needs)
    label_shares_arrow(table, name, column_names) -> [(label, count, share)]
        each label's count and share, with pyarrow alone (the labeling job's summary line; its
        module must not import polars or matplotlib, only the functions below that need them do)
    label_shares(df, name) -> pl.DataFrame (label, count, share)
        the same figures with polars, in the same order (the report's trend over dates)
    sections(df, name) -> list[Section]
        the report's tables of the classifier, each with its chart (Section.draw)
    most_confident(df, name, k) -> [(label, pl.DataFrame (id, score, text))]
        the k rows with the highest score for each label (ties: smaller id first; `top` below)
    uniform_warnings(df, name, share, min_rows) -> list[str]
        one line where (nearly) every labeled row got one label: the mark of a broken, random or
        mismatched checkpoint
    row_summary(row, name) -> str | None
        the classifier's labels of one row (a dict) in a few words, None where it has none (the demo's
        lines about single posts)
    trend_title(name) -> str, trend_style(label) -> dict | None
        the title of its panel in the trend chart, and a fixed colour/line/marker for a label
        (None: the chart's own cycle)

pipelines.report and pipelines.label_shares iterate over the classifiers present and call these;
they never name a classifier. This module imports polars: only report hooks and pipelines.report
import it, never the pyarrow path (models.classifiers.shares).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import polars as pl

from models.heads import column_suffix

# Colours of the classes that mean a polarity, wherever a classifier's labels are such classes.
CLASS_COLORS = {"unknown": "#bbbbbb", "negative": "#d62728", "neutral": "#1f77b4", "positive": "#2ca02c"}
DEFAULT_BAR_COLOR = "#1f77b4"
TITLE_INCHES_PER_CHAR = 0.09  # a title's width at matplotlib's default 12 pt


@dataclass
class Section:
    name: str  # file stem of its CSV and PNG
    title: str
    table: pl.DataFrame  # written as CSV
    on_terminal: bool = True
    display: pl.DataFrame | None = None  # shown in Markdown and on the terminal instead of `table`
    draw: Optional[Callable[["Section", pl.DataFrame], object]] = None  # (section, df) -> matplotlib Figure or None


def share(count: int, total: int) -> float:
    return count / total if total else 0.0


def labeled_rows(df: pl.DataFrame, column: str) -> int:
    return df.height - df.get_column(column).null_count()


# ---------------------------------------------------------------- tables

def histogram(column: pl.Series, values) -> pl.DataFrame:
    """Rows per value (in the order given) and their share of the rows with a label."""
    labeled = column.len() - column.null_count()
    counts = [int((column == v).sum()) for v in values]
    return pl.DataFrame({"label": [str(v) for v in values], "count": counts,
                         "share": [share(n, labeled) for n in counts]},
                        schema={"label": pl.String, "count": pl.Int64, "share": pl.Float64})


def seen_labels(column: pl.Series) -> list[str]:
    """The labels a single-label column carries, most frequent first (ties by label), as
    models.classifiers.shares.seen_label_shares orders them."""
    counts = column.drop_nulls().value_counts(name="_rows")  # no classifier's name starts with '_'
    return counts.sort(["_rows", column.name], descending=[True, False]).get_column(column.name).to_list()


def multi_labels(df: pl.DataFrame, list_column: str, score_prefix: str) -> list[str]:
    """Every label of a list<string> label column: those seen, then `<score_prefix><suffix>` columns
    no seen label accounts for, named by their suffix (labels that never reached their threshold)."""
    seen = sorted(set(df.get_column(list_column).explode().drop_nulls().to_list()))
    covered = {column_suffix(label) for label in seen}
    unseen = [c[len(score_prefix):] for c in df.columns
              if c.startswith(score_prefix) and c[len(score_prefix):] not in covered]
    return seen + unseen


def label_indicators(df: pl.DataFrame, list_column: str, labels: list[str]) -> np.ndarray:
    """[rows with a label list, labels] 0/1 matrix: does the row carry the label."""
    labeled = df.filter(pl.col(list_column).is_not_null())
    if not labels:
        return np.zeros((labeled.height, 0), dtype=np.int64)
    flags = labeled.select([pl.col(list_column).list.contains(label).alias(f"l{i}") for i, label in enumerate(labels)])
    return flags.to_numpy().astype(np.int64)


def label_frequencies(df: pl.DataFrame, list_column: str, score_prefix: str, key: str = "label") -> pl.DataFrame:
    """Rows carrying each label, and their share of the rows with a label list; most frequent first."""
    labels = multi_labels(df, list_column, score_prefix)
    flags = label_indicators(df, list_column, labels)
    counts = flags.sum(axis=0).tolist() if labels else []
    table = pl.DataFrame({key: labels, "count": counts,
                          "share": [share(n, flags.shape[0]) for n in counts]},
                         schema={key: pl.String, "count": pl.Int64, "share": pl.Float64})
    return table.sort(["count", key], descending=[True, False])


def cooccurrence(df: pl.DataFrame, list_column: str, score_prefix: str, key: str = "label") -> pl.DataFrame:
    """Rows carrying both labels, for every pair (the diagonal is each label's frequency)."""
    labels = label_frequencies(df, list_column, score_prefix, key).get_column(key).to_list()
    flags = label_indicators(df, list_column, labels)
    matrix = flags.T @ flags
    return pl.DataFrame({key: labels, **{label: matrix[:, i].tolist() for i, label in enumerate(labels)}},
                        schema={key: pl.String, **{label: pl.Int64 for label in labels}})


def top(df: pl.DataFrame, mask: pl.Expr, score: str, k: int) -> pl.DataFrame:
    """The k rows under `mask` with the highest `score` (ties: smaller id first): id, score, text."""
    return (df.filter(mask & pl.col(score).is_not_null())
            .sort([score, "id"], descending=[True, False]).head(k)
            .select(pl.col("id"), pl.col(score).cast(pl.Float64).alias("score"), pl.col("text")))


def multi_label_most_confident(df: pl.DataFrame, list_column: str, score_prefix: str, k: int
                               ) -> list[tuple[str, pl.DataFrame]]:
    """Per label, among the rows carrying it, the k with the highest probability of it."""
    out = []
    for label in multi_labels(df, list_column, score_prefix):
        column = f"{score_prefix}{column_suffix(label)}"
        if column in df.columns:
            out.append((label, top(df, pl.col(list_column).list.contains(label), column, k)))
    return out


def top_label_warning(name: str, counts: pl.DataFrame, labeled: int, share_at: float, min_rows: int) -> list[str]:
    """'NAME: LABEL on S of N labeled rows' when one label (the first column of `counts`) has a
    share of at least share_at over at least min_rows labeled rows."""
    best = counts.sort("share", descending=True).head(1)
    if labeled >= min_rows and best.height and best["share"][0] >= share_at:
        return [f"{name}: {best[counts.columns[0]][0]} on {best['share'][0]:.1%} of {labeled} labeled rows"]
    return []


def trend_title(name: str) -> str:
    return f"{name}: label share per date"


def polarity_style(label: str) -> dict | None:
    """A trend line of a polarity class in its colour (CLASS_COLORS), else None."""
    return {"color": CLASS_COLORS[label], "linestyle": "-", "marker": "o"} if label in CLASS_COLORS else None


# ---------------------------------------------------------------- charts (matplotlib imported when drawing)

def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def percent_label(share_of: float) -> str:
    return f"{100 * share_of:.1f}%" if share_of >= 0.001 or share_of == 0 else "<0.1%"


def share_bars(ax, labels: list[str], shares: list[float], colors: list[str]) -> None:
    """Vertical bars of shares (0..1) with the share written on each bar: a bar of 0.3% is too
    thin to see."""
    bars = ax.bar(labels, shares, color=colors)
    ax.bar_label(bars, labels=[percent_label(v) for v in shares], fontsize=8 if len(labels) <= 8 else 6.5)
    ax.set_ylim(0, 1.12)  # room for the label of a bar at 100%
    ax.set_yticks(np.linspace(0, 1, 6))


def share_chart(section: Section, xlabel: str, ylabel: str = "share of labeled rows"):
    """A section whose table is (label, count, share): one bar per label, polarity classes in their colours."""
    plt = pyplot()
    table = section.table
    labels = [str(label) for label in table[table.columns[0]].to_list()]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    share_bars(ax, labels, table["share"].to_list(), [CLASS_COLORS.get(label, DEFAULT_BAR_COLOR) for label in labels])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(section.title)
    return fig


def frequency_chart(section: Section, xlabel: str):
    """A multi-label section's (label, count, share) table: a horizontal bar per label, most frequent on top."""
    plt = pyplot()
    table = section.table
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.barh([str(label) for label in table[table.columns[0]].to_list()], table["share"].to_list(), color="#9467bd")
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel(xlabel)
    ax.set_title(section.title)
    return fig


def cooccurrence_chart(section: Section):
    """A co-occurrence table as a heat map with the count in each cell; None without labels."""
    table = section.table
    labels = table[table.columns[0]].to_list()
    if not labels:
        return None
    plt = pyplot()
    matrix = table.select(labels).to_numpy()
    # wide enough for the title too: a few labels make a narrow map
    width = max(1 + 0.55 * len(labels), TITLE_INCHES_PER_CHAR * len(section.title))
    fig, ax = plt.subplots(figsize=(width, 0.8 + 0.5 * len(labels)))
    image = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(value), ha="center", va="center", fontsize=7,
                color="white" if value > matrix.max() / 2 else "black")
    fig.colorbar(image, ax=ax, label="rows")
    fig.suptitle(section.title)  # centred on the figure, clear of the colour bar
    return fig
