"""emotion's report hooks (the protocol: models.classifiers.reporting): rows carrying each emotion
(share of the rows with emotions), their co-occurrence, most confident rows per emotion."""
from __future__ import annotations

from models.classifiers import shares
from models.classifiers.emotion import LIST_COLUMN, NAME, SCORE_PREFIX

KEY = NAME  # the label column of its tables


def label_column(name: str) -> str:
    return LIST_COLUMN


def arrow_columns(name: str, column_names) -> list[str]:
    return [LIST_COLUMN]


def label_shares_arrow(table, name: str, column_names) -> shares.LabelShares:
    """Rows carrying each emotion and their share of the rows with emotions; the labels no row
    carries (named only by an emotion_<label> column) at 0."""
    return shares.multi_label_shares(table[LIST_COLUMN], SCORE_PREFIX, column_names)


def frequencies(df):
    """Rows carrying each emotion, and their share of the rows with emotions; most frequent first."""
    from models.classifiers.reporting import label_frequencies

    return label_frequencies(df, LIST_COLUMN, SCORE_PREFIX, KEY)


def label_shares(df, name: str):
    return frequencies(df).rename({KEY: "label"})


def sections(df, name: str) -> list:
    from models.classifiers.reporting import Section, cooccurrence, cooccurrence_chart

    return [Section("emotions", "Emotion frequencies (share of rows with emotions)", frequencies(df),
                    draw=frequency_chart),
            Section("emotion_cooccurrence", "Emotion co-occurrence (rows carrying both)",
                    cooccurrence(df, LIST_COLUMN, SCORE_PREFIX, KEY), on_terminal=False,
                    draw=lambda section, _df: cooccurrence_chart(section))]


def frequency_chart(section, df):
    from models.classifiers.reporting import frequency_chart as bars

    return bars(section, "share of labeled rows carrying the emotion")


def most_confident(df, name: str, k: int) -> list:
    """Per emotion, among the rows carrying it, by its probability."""
    from models.classifiers.reporting import multi_label_most_confident

    return multi_label_most_confident(df, LIST_COLUMN, SCORE_PREFIX, k)


def uniform_warnings(df, name: str, share: float, min_rows: int) -> list[str]:
    """An emotion carried by nearly every row with emotions."""
    from models.classifiers.reporting import labeled_rows, top_label_warning

    return top_label_warning(name, frequencies(df), labeled_rows(df, LIST_COLUMN), share, min_rows)


def trend_title(name: str) -> str:
    from models.classifiers.reporting import trend_title as title

    return title(name)


def trend_style(label: str) -> dict | None:
    return None


def row_summary(row: dict, name: str) -> str | None:
    """'emotions=joy+love' ('-' for none), for a line about one post (pipelines.demo)."""
    labels = row.get(label_column(name))
    return None if labels is None else f"{label_column(name)}=" + ("+".join(labels) or "-")
