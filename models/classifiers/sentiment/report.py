"""sentiment's report hooks (the protocol: models.classifiers.reporting): rows per sentiment."""
from __future__ import annotations

from models.classifiers import shares
from models.classifiers.sentiment import LABELS, NAME

SCORE_COLUMN = f"{NAME}_score"


def label_column(name: str) -> str:
    return NAME


def arrow_columns(name: str, column_names) -> list[str]:
    return [NAME]


def label_shares_arrow(table, name: str, column_names) -> shares.LabelShares:
    """Each sentiment's share of the rows with a sentiment."""
    return shares.fixed_label_shares(table[NAME], LABELS)


def share_table(df):
    """Rows per sentiment and their share of the rows with a sentiment."""
    from models.classifiers.reporting import histogram

    return histogram(df.get_column(NAME), LABELS).rename({"label": NAME})


def label_shares(df, name: str):
    return share_table(df).rename({NAME: "label"})


def sections(df, name: str) -> list:
    from models.classifiers.reporting import Section

    return [Section(NAME, "Sentiment share", share_table(df), draw=share_chart)]


def share_chart(section, df):
    from models.classifiers.reporting import share_chart as bars

    return bars(section, xlabel=NAME)


def most_confident(df, name: str, k: int) -> list:
    import polars as pl
    from models.classifiers.reporting import top

    return [(label, top(df, pl.col(NAME) == label, SCORE_COLUMN, k)) for label in LABELS]


def uniform_warnings(df, name: str, share: float, min_rows: int) -> list[str]:
    from models.classifiers.reporting import labeled_rows, top_label_warning

    return top_label_warning(name, share_table(df), labeled_rows(df, NAME), share, min_rows)


def trend_title(name: str) -> str:
    from models.classifiers.reporting import trend_title as title

    return title(name)


def trend_style(label: str) -> dict | None:
    from models.classifiers.reporting import polarity_style

    return polarity_style(label)


def row_summary(row: dict, name: str) -> str | None:
    """'negative 0.87', for a line about one post (pipelines.demo)."""
    return None if row.get(name) is None else f"{row[name]} {row[f'{name}_score']:.2f}"
