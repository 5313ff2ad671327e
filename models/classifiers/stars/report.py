"""stars' report hooks (the protocol: models.classifiers.reporting): rows per star 1..5."""
from __future__ import annotations

from models.classifiers import shares
from models.classifiers.stars import NAME, STARS

SCORE_COLUMN = f"{NAME}_score"


def label_column(name: str) -> str:
    return NAME


def arrow_columns(name: str, column_names) -> list[str]:
    return [NAME]


def label_shares_arrow(table, name: str, column_names) -> shares.LabelShares:
    """Each star's share of the rows with a star."""
    return shares.fixed_label_shares(table[NAME], STARS)


def histogram(df):
    """Rows per star 1..5 and their share of the rows with a star."""
    from models.classifiers.reporting import histogram as rows_per_value

    return rows_per_value(df.get_column(NAME), STARS).rename({"label": NAME})


def label_shares(df, name: str):
    return histogram(df).rename({NAME: "label"})


def sections(df, name: str) -> list:
    from models.classifiers.reporting import Section

    return [Section(NAME, "Stars histogram", histogram(df), draw=histogram_chart)]


def histogram_chart(section, df):
    from models.classifiers.reporting import pyplot

    plt = pyplot()
    table = section.table
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar([str(star) for star in table[NAME].to_list()], table["count"].to_list(), color="#ff7f0e")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("stars")
    ax.set_ylabel("rows")
    ax.set_title(section.title)
    return fig


def most_confident(df, name: str, k: int) -> list:
    import polars as pl
    from models.classifiers.reporting import top

    return [(str(star), top(df, pl.col(NAME) == star, SCORE_COLUMN, k)) for star in STARS]


def uniform_warnings(df, name: str, share: float, min_rows: int) -> list[str]:
    from models.classifiers.reporting import labeled_rows, top_label_warning

    return top_label_warning(name, histogram(df), labeled_rows(df, NAME), share, min_rows)


def trend_title(name: str) -> str:
    from models.classifiers.reporting import trend_title as title

    return title(name)


def trend_style(label: str) -> dict | None:
    return None


def row_summary(row: dict, name: str) -> str | None:
    """'4★', for a line about one post (pipelines.demo)."""
    return None if row.get(name) is None else f"{row[name]}★"
