"""politics' report hooks (the protocol: models.classifiers.reporting): per topic, the rows of each
class; pooled over the 12 topics, each class's share of the labeled topic cells."""
from __future__ import annotations

from models.classifiers import shares
from models.classifiers.politics import CLASSES, TOPICS, topic_column

# negative/neutral/positive: `unknown` says the topic is absent, and is no label to show examples of
POLAR_CLASSES = CLASSES[1:]


def label_column(name: str) -> str:
    return topic_column(TOPICS[0])


def arrow_columns(name: str, column_names) -> list[str]:
    return [topic_column(t) for t in TOPICS if topic_column(t) in column_names]


def label_shares_arrow(table, name: str, column_names) -> shares.LabelShares:
    """Each class's share of all labeled topic cells (the 12 topics pooled)."""
    topics = [table[topic_column(t)] for t in TOPICS if topic_column(t) in table.column_names]
    counts = [sum(shares.count_equal(column, cls) for column in topics) for cls in CLASSES]
    return [(cls, n, n / max(sum(counts), 1)) for cls, n in zip(CLASSES, counts)]


def distribution(df):
    """Per topic and class: rows with that class, and its share of the topic's labeled rows."""
    import polars as pl

    exprs = [(pl.col(topic_column(t)) == c).sum().alias(f"{t}|{c}") for t in TOPICS for c in CLASSES]
    counts = df.select(exprs).row(0, named=True)
    records = []
    for topic in TOPICS:
        labeled = sum(counts[f"{topic}|{c}"] for c in CLASSES)
        for cls in CLASSES:
            n = counts[f"{topic}|{cls}"]
            records.append({"topic": topic, "class": cls, "count": n, "share": shares.share(n, labeled)})
    return pl.DataFrame(records, schema={"topic": pl.String, "class": pl.String, "count": pl.Int64,
                                         "share": pl.Float64})


def label_shares(df, name: str):
    """Each class's share of all labeled topic cells (the 12 topics pooled)."""
    import polars as pl

    dist = distribution(df).group_by("class", maintain_order=True).agg(pl.col("count").sum())
    cells = dist.get_column("count").sum()
    return dist.select(pl.col("class").alias("label"), "count", (pl.col("count") / max(cells, 1)).alias("share"))


def sections(df, name: str) -> list:
    from models.classifiers.reporting import Section

    dist = distribution(df)
    wide = dist.pivot(on="class", index="topic", values="count")
    return [Section("politics_topics", "Politics: rows per topic and class", dist, display=wide, draw=topics_chart)]


def topics_chart(section, df):
    """Per topic, a bar of its classes' shares, stacked."""
    import numpy as np
    import polars as pl
    from models.classifiers.reporting import CLASS_COLORS, pyplot

    plt = pyplot()
    dist = section.table
    fig, ax = plt.subplots(figsize=(8, 5))
    left = np.zeros(len(TOPICS))
    for cls in CLASSES:
        class_shares = np.array(dist.filter(pl.col("class") == cls).get_column("share").to_list())
        ax.barh(list(TOPICS), class_shares, left=left, color=CLASS_COLORS[cls], label=cls)
        left += class_shares
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of labeled rows")
    ax.set_title("Politics: class share per topic")
    ax.legend(ncol=4, loc="lower center", bbox_to_anchor=(0.5, -0.25))
    return fig


def most_confident(df, name: str, k: int) -> list:
    """Each topic's negative, neutral and positive rows by that class's probability."""
    import polars as pl
    from models.classifiers.reporting import top

    return [(f"{topic}={cls}", top(df, pl.col(topic_column(topic)) == cls, f"{topic_column(topic)}_score", k))
            for topic in TOPICS for cls in POLAR_CLASSES]


def uniform_warnings(df, name: str, share: float, min_rows: int) -> list[str]:
    """Counted per topic; a topic stuck on 'unknown' alone is normal (most posts are about few
    topics), so it warns when a topic is stuck on a negative/neutral/positive class, or all are stuck."""
    import polars as pl

    dist = distribution(df)
    labeled = dist.group_by("topic").agg(pl.col("count").sum().alias("rows"))
    stuck = dist.join(labeled, on="topic").filter((pl.col("rows") >= min_rows) & (pl.col("share") >= share))
    polar = stuck.filter(pl.col("class") != CLASSES[0])
    if not (polar.height or stuck.height == len(TOPICS)):
        return []
    unknown = stuck.height - polar.height
    example = f", e.g. {polar['topic'][0]}: {polar['class'][0]}" if polar.height else ""
    return [f"{name}: {stuck.height} of {len(TOPICS)} topics gave one class to >= {share:.0%} of rows "
            f"({polar.height} a negative/neutral/positive one{example}; "
            f"{unknown} unknown, which alone is normal for a topic few posts are about)"]


def trend_title(name: str) -> str:
    from models.classifiers.reporting import trend_title as title

    return f"{title(name)} ({len(TOPICS)} topics pooled)"


def trend_style(label: str) -> dict | None:
    from models.classifiers.reporting import polarity_style

    return polarity_style(label)


def row_summary(row: dict, name: str) -> str | None:
    """The topics a row is not `unknown` on, for a line about one post (pipelines.demo)."""
    topics = [f"{t}:{row[topic_column(t)]}" for t in TOPICS if row.get(topic_column(t)) not in (None, CLASSES[0])]
    return " ".join(topics) or None
