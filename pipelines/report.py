"""Summarize a labeled output: tables (Markdown and CSV), PNG charts, and a text table.

    python -m pipelines.report DIR [DIR ...] [--examples 3] [--trend-dir DIR]

The columns it reads are described in docs/output-schema.md.

DIR holds the labeling pipeline's labels-*.parquet (local, gs:// or s3://). Each DIR gets
DIR/_report/: report.md, one CSV per table and one PNG per chart. With several DIRs (date
partitions), each label's share per partition also goes, as a CSV, a Markdown table and a
line chart, to --trend-dir (default: the latest partition's _report/). A partition's date is
the first YYYY-MM-DD in its path, else the folder name.

The aggregations are pure functions of a polars DataFrame; the rest is reading and writing.
"""
from __future__ import annotations

import argparse
import io
import re
import sys
from dataclasses import dataclass

import numpy as np
import polars as pl

from pipelines import console  # noqa: F401  first: keeps Beam's import-time warning off the terminal
from apache_beam.io.filesystems import FileSystems

from models.heads import column_suffix
from models.classifiers import PUBLISHED_NAMES as CLASSIFIER_NAMES
from models.classifiers.politics import CLASSES as POLITICS_CLASSES, TOPICS as POLITICS_TOPICS
from pipelines.label_shares import LABEL_COLUMN, STARS
from transforms.contract import SHARD_GLOB
from transforms.partition import read_manifest

REPORT_FOLDER = "_report"
SENTIMENTS = ("negative", "positive")
EXAMPLE_TEXT_CHARS = 100


# ---------------------------------------------------------------- aggregations (pure)

def classifiers_present(df: pl.DataFrame) -> list[str]:
    return [name for name in CLASSIFIER_NAMES if LABEL_COLUMN[name] in df.columns]


def _share(count: int, total: int) -> float:
    return count / total if total else 0.0


def summary(df: pl.DataFrame) -> pl.DataFrame:
    """One row per classifier in the output: rows labeled, rows left null, null share."""
    total = df.height
    records = []
    for name in classifiers_present(df):
        nulls = df.get_column(LABEL_COLUMN[name]).null_count()
        records.append({"classifier": name, "rows": total, "labeled_rows": total - nulls,
                        "null_rows": nulls, "null_share": _share(nulls, total)})
    return pl.DataFrame(records, schema={"classifier": pl.String, "rows": pl.Int64, "labeled_rows": pl.Int64,
                                         "null_rows": pl.Int64, "null_share": pl.Float64})


def politics_distribution(df: pl.DataFrame) -> pl.DataFrame:
    """Per topic and class: rows with that class, and its share of the topic's labeled rows."""
    exprs = [(pl.col(f"politics_{t}") == c).sum().alias(f"{t}|{c}") for t in POLITICS_TOPICS for c in POLITICS_CLASSES]
    counts = df.select(exprs).row(0, named=True)
    records = []
    for topic in POLITICS_TOPICS:
        labeled = sum(counts[f"{topic}|{c}"] for c in POLITICS_CLASSES)
        for cls in POLITICS_CLASSES:
            n = counts[f"{topic}|{cls}"]
            records.append({"topic": topic, "class": cls, "count": n, "share": _share(n, labeled)})
    return pl.DataFrame(records, schema={"topic": pl.String, "class": pl.String, "count": pl.Int64,
                                         "share": pl.Float64})


def _histogram(column: pl.Series, values) -> pl.DataFrame:
    labeled = column.len() - column.null_count()
    counts = [int((column == v).sum()) for v in values]
    return pl.DataFrame({"label": [str(v) for v in values], "count": counts,
                         "share": [_share(n, labeled) for n in counts]},
                        schema={"label": pl.String, "count": pl.Int64, "share": pl.Float64})


def stars_histogram(df: pl.DataFrame) -> pl.DataFrame:
    """Rows per star 1..5 and their share of the rows with a star."""
    return _histogram(df.get_column("stars"), STARS).rename({"label": "stars"})


def sentiment_share(df: pl.DataFrame) -> pl.DataFrame:
    """Rows per sentiment and their share of the rows with a sentiment."""
    return _histogram(df.get_column("sentiment"), SENTIMENTS).rename({"label": "sentiment"})


def emotion_labels(df: pl.DataFrame) -> list[str]:
    """Every emotion label: those seen in `emotions`, then columns no seen label accounts for,
    named by their column suffix (labels that never reached their threshold)."""
    seen = sorted(set(df.get_column("emotions").explode().drop_nulls().to_list()))
    covered = {column_suffix(label) for label in seen}
    unseen = [c[len("emotion_"):] for c in df.columns
              if c.startswith("emotion_") and c[len("emotion_"):] not in covered]
    return seen + unseen


def _emotion_indicators(df: pl.DataFrame, labels: list[str]) -> np.ndarray:
    """[rows with emotions, labels] 0/1 matrix: does the row carry the label."""
    labeled = df.filter(pl.col("emotions").is_not_null())
    if not labels:
        return np.zeros((labeled.height, 0), dtype=np.int64)
    flags = labeled.select([pl.col("emotions").list.contains(label).alias(f"l{i}") for i, label in enumerate(labels)])
    return flags.to_numpy().astype(np.int64)


def emotion_frequencies(df: pl.DataFrame) -> pl.DataFrame:
    """Rows carrying each emotion, and their share of the rows with emotions; most frequent first."""
    labels = emotion_labels(df)
    flags = _emotion_indicators(df, labels)
    counts = flags.sum(axis=0).tolist() if labels else []
    table = pl.DataFrame({"emotion": labels, "count": counts,
                          "share": [_share(n, flags.shape[0]) for n in counts]},
                         schema={"emotion": pl.String, "count": pl.Int64, "share": pl.Float64})
    return table.sort(["count", "emotion"], descending=[True, False])


def emotion_cooccurrence(df: pl.DataFrame) -> pl.DataFrame:
    """Rows carrying both emotions, for every pair (the diagonal is each label's frequency)."""
    labels = emotion_frequencies(df).get_column("emotion").to_list()
    flags = _emotion_indicators(df, labels)
    matrix = flags.T @ flags
    return pl.DataFrame({"emotion": labels, **{label: matrix[:, i].tolist() for i, label in enumerate(labels)}},
                        schema={"emotion": pl.String, **{label: pl.Int64 for label in labels}})


def _top(df: pl.DataFrame, mask: pl.Expr, score: str, k: int) -> pl.DataFrame:
    return (df.filter(mask & pl.col(score).is_not_null())
            .sort([score, "id"], descending=[True, False]).head(k)
            .select(pl.col("id"), pl.col(score).cast(pl.Float64).alias("score"), pl.col("text")))


def most_confident(df: pl.DataFrame, k: int = 3) -> pl.DataFrame:
    """The k rows with the highest score for each label (ties: smaller id first).
    Politics: each topic's negative/neutral/positive (not `unknown`, which says the topic is absent);
    emotions: among the rows carrying the label, by that label's probability."""
    parts = []

    def add(classifier: str, label: str, top: pl.DataFrame):
        parts.append(top.with_columns(pl.lit(classifier).alias("classifier"), pl.lit(label).alias("label"),
                                      pl.int_range(1, top.height + 1, dtype=pl.Int64).alias("rank")))

    present = classifiers_present(df)
    if "politics" in present:
        for topic in POLITICS_TOPICS:
            for cls in POLITICS_CLASSES[1:]:
                add("politics", f"{topic}={cls}",
                    _top(df, pl.col(f"politics_{topic}") == cls, f"politics_{topic}_score", k))
    if "stars" in present:
        for star in STARS:
            add("stars", str(star), _top(df, pl.col("stars") == star, "stars_score", k))
    if "sentiment" in present:
        for label in SENTIMENTS:
            add("sentiment", label, _top(df, pl.col("sentiment") == label, "sentiment_score", k))
    if "emotion" in present:
        for label in emotion_labels(df):
            column = f"emotion_{column_suffix(label)}"
            if column in df.columns:
                add("emotion", label, _top(df, pl.col("emotions").list.contains(label), column, k))
    columns = ["classifier", "label", "rank", "id", "score", "text"]
    if not parts:
        return pl.DataFrame(schema={"classifier": pl.String, "label": pl.String, "rank": pl.Int64,
                                    "id": pl.String, "score": pl.Float64, "text": pl.String})
    return pl.concat([p.select(columns) for p in parts])


def language_shares(df: pl.DataFrame) -> pl.DataFrame:
    """Rows per `lang` value and their share, most common first (empty without a `lang` column)."""
    schema = {"lang": pl.String, "count": pl.Int64, "share": pl.Float64}
    if "lang" not in df.columns:
        return pl.DataFrame(schema=schema)
    counts = df.group_by("lang").len("count").sort(["count", "lang"], descending=[True, False])
    return counts.with_columns((pl.col("count") / max(df.height, 1)).alias("share")).cast(schema)


def uniform_label_warnings(df: pl.DataFrame, share: float = 0.98, min_rows: int = 20) -> list[str]:
    """Warnings for classifiers that gave (nearly) every labeled row the same label: the mark of a
    broken, random or mismatched checkpoint. Politics counts per topic, leaving out 'unknown'
    (most posts are about few topics); emotion: a label carried by nearly every row."""
    warnings = []
    present = classifiers_present(df)
    if "politics" in present:
        dist = politics_distribution(df)
        labeled = dist.group_by("topic").agg(pl.col("count").sum().alias("rows"))
        stuck = dist.join(labeled, on="topic").filter((pl.col("rows") >= min_rows) & (pl.col("share") >= share))
        polar = stuck.filter(pl.col("class") != "unknown")
        if polar.height or stuck.height == len(POLITICS_TOPICS):
            unknown = stuck.height - polar.height
            example = f", e.g. {polar['topic'][0]}: {polar['class'][0]}" if polar.height else ""
            warnings.append(f"politics: {stuck.height} of {len(POLITICS_TOPICS)} topics gave one class to "
                            f">= {share:.0%} of rows ({polar.height} a negative/neutral/positive one{example}; "
                            f"{unknown} unknown, which alone is normal for a topic few posts are about)")
    for name, table, key in (("stars", "stars_histogram", "stars"), ("sentiment", "sentiment_share", "sentiment"),
                             ("emotion", "emotion_frequencies", "emotion")):
        if name not in present:
            continue
        counts = globals()[table](df)
        labeled = df.height - df.get_column(LABEL_COLUMN[name]).null_count()
        top = counts.sort("share", descending=True).head(1)
        if labeled >= min_rows and top.height and top["share"][0] >= share:
            warnings.append(f"{name}: {top[key][0]} on {top['share'][0]:.1%} of {labeled} labeled rows")
    return [f"{w}: nearly every post got the same label; check the checkpoint" for w in warnings]


def label_shares(df: pl.DataFrame) -> pl.DataFrame:
    """Each label's share in one partition, long format (classifier, label, count, share).
    Politics: each class's share of all labeled topic cells (the 12 topics pooled)."""
    parts = []
    present = classifiers_present(df)
    if "politics" in present:
        dist = politics_distribution(df).group_by("class", maintain_order=True).agg(pl.col("count").sum())
        cells = dist.get_column("count").sum()
        parts.append(dist.select(pl.lit("politics").alias("classifier"), pl.col("class").alias("label"),
                                 "count", (pl.col("count") / max(cells, 1)).alias("share")))
    if "stars" in present:
        parts.append(stars_histogram(df).select(pl.lit("stars").alias("classifier"),
                                                pl.col("stars").alias("label"), "count", "share"))
    if "sentiment" in present:
        parts.append(sentiment_share(df).select(pl.lit("sentiment").alias("classifier"),
                                                pl.col("sentiment").alias("label"), "count", "share"))
    if "emotion" in present:
        parts.append(emotion_frequencies(df).select(pl.lit("emotion").alias("classifier"),
                                                    pl.col("emotion").alias("label"), "count", "share"))
    schema = {"classifier": pl.String, "label": pl.String, "count": pl.Int64, "share": pl.Float64}
    return pl.concat([p.cast(schema) for p in parts]) if parts else pl.DataFrame(schema=schema)


def shares_over_dates(partitions: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """label_shares of each partition, with a `date` column, in date order; labels missing
    from a partition count 0 there."""
    frames = [label_shares(df).with_columns(pl.lit(date).alias("date")) for date, df in sorted(partitions.items())]
    if not frames:
        return pl.DataFrame(schema={"date": pl.String, "classifier": pl.String, "label": pl.String,
                                    "count": pl.Int64, "share": pl.Float64})
    long = pl.concat(frames)
    labels = long.select("classifier", "label").unique(maintain_order=True).with_row_index("order")
    grid = long.select("date").unique().join(labels, how="cross")
    return (grid.join(long, on=["date", "classifier", "label"], how="left")
            .with_columns(pl.col("count").fill_null(0), pl.col("share").fill_null(0.0))
            .sort(["order", "date"])  # classifiers and labels in report order, then dates
            .select("date", "classifier", "label", "count", "share"))


def partition_date(path: str) -> str:
    """The first YYYY-MM-DD in a partition's path, else its last folder name."""
    found = re.findall(r"\d{4}-\d{2}-\d{2}", path)
    return found[0] if found else path.rstrip("/").rsplit("/", 1)[-1]


# ---------------------------------------------------------------- rendering

def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if value is None:
        return ""
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(df: pl.DataFrame) -> str:
    """A GitHub Markdown table; floats with four decimals."""
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in df.iter_rows()]
    return "\n".join(lines)


def _shorten(df: pl.DataFrame) -> pl.DataFrame:
    return df.with_columns(pl.col("text").str.replace_all(r"\s+", " ").str.slice(0, EXAMPLE_TEXT_CHARS))


@dataclass
class Section:
    name: str  # file stem of its CSV and PNG
    title: str
    table: pl.DataFrame  # written as CSV
    on_terminal: bool = True
    display: pl.DataFrame | None = None  # shown in Markdown and on the terminal instead of `table`


def sections(df: pl.DataFrame, examples: int) -> list[Section]:
    present = classifiers_present(df)
    out = [Section("summary", "Rows per classifier", summary(df))]
    if "lang" in df.columns:
        out.append(Section("languages", "Languages (the lang column)", language_shares(df)))
    if "politics" in present:
        dist = politics_distribution(df)
        wide = dist.pivot(on="class", index="topic", values="count")
        out.append(Section("politics_topics", "Politics: rows per topic and class", dist, display=wide))
    if "stars" in present:
        out.append(Section("stars", "Stars histogram", stars_histogram(df)))
    if "sentiment" in present:
        out.append(Section("sentiment", "Sentiment share", sentiment_share(df)))
    if "emotion" in present:
        out.append(Section("emotions", "Emotion frequencies (share of rows with emotions)", emotion_frequencies(df)))
        out.append(Section("emotion_cooccurrence", "Emotion co-occurrence (rows carrying both)",
                           emotion_cooccurrence(df), on_terminal=False))
    out.append(Section("most_confident", f"Most confident examples ({examples} per label)",
                       most_confident(df, examples), on_terminal=False))
    return out


def _write(path: str, data: bytes) -> None:
    with FileSystems.create(path) as handle:
        handle.write(data)


def _figure_bytes(fig) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


CLASS_COLORS = {"unknown": "#bbbbbb", "negative": "#d62728", "neutral": "#1f77b4", "positive": "#2ca02c"}
MAX_LANGUAGE_BARS = 12
# Lines of a trend chart: matplotlib's 10 qualitative colours, then the same colours dashed, with a
# marker of their own, so that 14 emotion labels (or more) stay apart.
LINE_STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def line_style(index: int) -> dict:
    """The colour, line style and marker of a trend chart's index-th line: distinct for the first 40."""
    import matplotlib

    colors = matplotlib.colormaps["tab10"].colors
    return {"color": colors[index % len(colors)], "linestyle": LINE_STYLES[(index // len(colors)) % len(LINE_STYLES)],
            "marker": MARKERS[index % len(MARKERS)]}


def _percent_label(share: float) -> str:
    return f"{100 * share:.1f}%" if share >= 0.001 or share == 0 else "<0.1%"


def chart(section: Section, df: pl.DataFrame) -> bytes | None:
    """The PNG for a section, or None where it has no chart."""
    plt = _plt()
    if section.name == "summary":
        fig, ax = plt.subplots(figsize=(6, 3))
        table = section.table
        ax.bar(table["classifier"].to_list(), table["labeled_rows"].to_list(), color="#1f77b4", label="labeled")
        ax.bar(table["classifier"].to_list(), table["null_rows"].to_list(), bottom=table["labeled_rows"].to_list(),
               color="#bbbbbb", label="null (no text, or not its language)")
        ax.set_ylabel("rows")
        ax.set_ylim(0, max(df.height, 1) * 1.25)
        ax.set_title(f"Rows per classifier ({df.height} rows)")
        ax.legend(ncol=2, loc="upper center")
        return _figure_bytes(fig)
    if section.name == "politics_topics":
        dist = section.table
        fig, ax = plt.subplots(figsize=(8, 5))
        left = np.zeros(len(POLITICS_TOPICS))
        for cls in POLITICS_CLASSES:
            shares = np.array(dist.filter(pl.col("class") == cls).get_column("share").to_list())
            ax.barh(list(POLITICS_TOPICS), shares, left=left, color=CLASS_COLORS[cls], label=cls)
            left += shares
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_xlabel("share of labeled rows")
        ax.set_title("Politics: class share per topic")
        ax.legend(ncol=4, loc="lower center", bbox_to_anchor=(0.5, -0.25))
        return _figure_bytes(fig)
    if section.name in ("stars", "sentiment", "emotions", "languages"):
        table, key = section.table, section.table.columns[0]
        fig, ax = plt.subplots(figsize=(6, 3.5 if section.name != "emotions" else 5))
        labels = [str(label) for label in table[key].to_list()]
        if section.name == "emotions":
            ax.barh(labels, table["share"].to_list(), color="#9467bd")
            ax.invert_yaxis()
            ax.set_xlim(0, 1)
            ax.set_xlabel("share of labeled rows carrying the emotion")
        elif section.name == "stars":
            ax.bar(labels, table["count"].to_list(), color="#ff7f0e")
            ax.yaxis.get_major_locator().set_params(integer=True)
            ax.set_xlabel("stars")
            ax.set_ylabel("rows")
        else:
            shown = labels[:MAX_LANGUAGE_BARS]
            colors = [CLASS_COLORS.get(label, "#1f77b4") for label in shown]
            bars = ax.bar(shown, table["share"].to_list()[:len(shown)], color=colors)
            # the share on each bar: a language of 0.3% is a bar too thin to see
            ax.bar_label(bars, labels=[_percent_label(v) for v in table["share"].to_list()[:len(shown)]],
                         fontsize=8 if len(shown) <= 8 else 6.5)
            ax.set_ylim(0, 1.12)  # room for the label of a bar at 100%
            ax.set_yticks(np.linspace(0, 1, 6))
            ax.set_xlabel("sentiment" if section.name == "sentiment" else "lang")
            ax.set_ylabel("share of labeled rows" if section.name == "sentiment" else "share of rows")
        title = section.title
        if section.name == "languages" and len(labels) > MAX_LANGUAGE_BARS:
            title = f"Languages: the {MAX_LANGUAGE_BARS} most common of {len(labels)} (the lang column)"
        ax.set_title(title)
        return _figure_bytes(fig)
    if section.name == "emotion_cooccurrence":
        table = section.table
        labels = table["emotion"].to_list()
        if not labels:
            return None
        matrix = table.select(labels).to_numpy()
        fig, ax = plt.subplots(figsize=(1 + 0.55 * len(labels), 0.8 + 0.5 * len(labels)))
        image = ax.imshow(matrix, cmap="Blues")
        ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right")
        ax.set_yticks(range(len(labels)), labels)
        for (i, j), value in np.ndenumerate(matrix):
            ax.text(j, i, str(value), ha="center", va="center", fontsize=7,
                    color="white" if value > matrix.max() / 2 else "black")
        fig.colorbar(image, ax=ax, label="rows")
        fig.suptitle("Emotion co-occurrence (rows carrying both)")  # centred on the figure, clear of the bar
        return _figure_bytes(fig)
    return None


def trend_chart(trend: pl.DataFrame) -> bytes:
    plt = _plt()
    classifiers = [c for c in CLASSIFIER_NAMES if c in set(trend["classifier"].to_list())]
    fig, axes = plt.subplots(len(classifiers), 1, figsize=(8, 3 * max(len(classifiers), 1)), squeeze=False)
    for ax, name in zip(axes[:, 0], classifiers):
        part = trend.filter(pl.col("classifier") == name)
        for index, label in enumerate(part["label"].unique(maintain_order=True).to_list()):
            line = part.filter(pl.col("label") == label).sort("date")
            style = line_style(index)
            if name in ("politics", "sentiment") and label in CLASS_COLORS:
                style = {"color": CLASS_COLORS[label], "linestyle": "-", "marker": "o"}
            ax.plot(line["date"].to_list(), line["share"].to_list(), label=label, **style)
        ax.set_title(f"{name}: label share per date" + (" (12 topics pooled)" if name == "politics" else ""))
        ax.set_ylabel("share")
        ax.set_ylim(-0.05, 1.05)  # a line at 0 or 1 stays clear of the frame
        ax.legend(fontsize=7, ncol=2, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _figure_bytes(fig)


# ---------------------------------------------------------------- reading and writing

def read_partition(directory: str) -> pl.DataFrame:
    pattern = FileSystems.join(directory, SHARD_GLOB)
    paths = sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)
    if not paths:
        raise FileNotFoundError(f"no {SHARD_GLOB} under {directory}")
    frames = []
    for path in paths:
        with FileSystems.open(path) as handle:
            frames.append(pl.read_parquet(io.BytesIO(handle.read())))
    return pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]


def status_lines(manifest: dict | None, rows: int) -> list[str]:
    """The report's header: is the partition complete, and what its manifest counted."""
    if manifest is None:
        return [f"Rows: {rows}", "",
                "Partition complete (_SUCCESS): **no**: incomplete, still being written, or not written "
                "by the labeling pipeline"]
    complete = ("yes" if not manifest.get("problem") else
                f"**no**: the run was written but does not look like success (exit 3): {manifest['problem']}")
    lines = [f"Rows: {rows}", "", f"Partition complete (_SUCCESS): {complete}", "",
             f"Records read: {manifest.get('records_read')}; rows written: {manifest.get('rows_written')}; "
             f"dead-lettered: {manifest.get('dead_lettered')}"]
    checkpoints = manifest.get("checkpoints") or {}
    if checkpoints:
        lines += ["", "Checkpoints:", ""]
        lines += [f"- {name}: {entry.get('checkpoint')} ({entry.get('revision')})" for name, entry in checkpoints.items()]
    return lines


def write_report(directory: str, df: pl.DataFrame, examples: int = 3, out=sys.stdout) -> str:
    """Writes directory/_report/ (report.md, CSVs, PNGs), prints the text tables; returns the folder."""
    folder = FileSystems.join(directory, REPORT_FOLDER)
    parts = sections(df, examples)
    manifest = read_manifest(directory, suspect=True)
    md = [f"# Labeling report: {directory}", "", *status_lines(manifest, df.height), ""]
    print(f"{directory}: {df.height} rows", file=out)
    if manifest is None:
        print("warning: no _SUCCESS (or no _manifest.json): the partition is incomplete or still being written",
              file=out)
    elif manifest.get("problem"):
        print(f"warning: no _SUCCESS: the run does not look like success: {manifest['problem']}", file=out)
    warnings = uniform_label_warnings(df)
    for warning in warnings:
        print(f"warning: {warning}", file=out)
    md += [f"**Warning**: {warning}" for warning in warnings] + ([""] if warnings else [])
    for section in parts:
        table = section.display if section.display is not None else section.table
        table = _shorten(table) if section.name == "most_confident" else table
        _write(FileSystems.join(folder, f"{section.name}.csv"), section.table.write_csv().encode("utf-8"))
        png = chart(section, df)
        md += [f"## {section.title}", ""]
        if png is not None:
            _write(FileSystems.join(folder, f"{section.name}.png"), png)
            md += [f"![{section.title}]({section.name}.png)", ""]
        md += [markdown_table(table), ""]
        if section.on_terminal:
            print(f"\n{section.title}\n{markdown_table(table)}", file=out)
    _write(FileSystems.join(folder, "report.md"), "\n".join(md).encode("utf-8"))
    print(f"\nreport: {folder}", file=out)
    return folder


def write_trend(folder: str, partitions: dict[str, pl.DataFrame], out=sys.stdout) -> pl.DataFrame:
    trend = shares_over_dates(partitions)
    _write(FileSystems.join(folder, "label_shares_over_dates.csv"), trend.write_csv().encode("utf-8"))
    _write(FileSystems.join(folder, "label_shares_over_dates.png"), trend_chart(trend))
    md = ["# Label shares over dates", "", "![label shares over dates](label_shares_over_dates.png)", ""]
    for name in CLASSIFIER_NAMES:
        part = trend.filter(pl.col("classifier") == name)
        if part.height:
            wide = part.pivot(on="label", index="date", values="share").sort("date")
            md += [f"## {name}", "", markdown_table(wide), ""]
            print(f"\n{name}: share per date\n{markdown_table(wide)}", file=out)
    _write(FileSystems.join(folder, "label_shares_over_dates.md"), "\n".join(md).encode("utf-8"))
    print(f"\ntrend: {folder}", file=out)
    return trend


def parse_args(argv):
    parser = argparse.ArgumentParser(prog=console.prog("python -m pipelines.report", "label-report"),
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="labeled output folder(s), one per date partition")
    parser.add_argument("--examples", type=int, default=3, help="most confident examples per label")
    parser.add_argument("--trend-dir", help="where the shares-over-dates files go (several DIRs); "
                                            "default: the latest partition's _report/")
    return parser.parse_args(argv)


def run(argv=None, out=sys.stdout) -> dict[str, str]:
    """Report on each DIR; returns {DIR: its report folder} (and 'trend' with several DIRs)."""
    args = parse_args(argv)
    frames = {directory: read_partition(directory) for directory in args.dirs}
    folders = {directory: write_report(directory, df, args.examples, out) for directory, df in frames.items()}
    if len(frames) > 1:
        dated = {partition_date(d): df for d, df in frames.items()}
        if len(dated) < len(frames):
            raise ValueError(f"partitions share a date: {[partition_date(d) for d in frames]}")
        latest = max(frames, key=partition_date)
        folders["trend"] = args.trend_dir or FileSystems.join(latest, REPORT_FOLDER)
        write_trend(folders["trend"], dated, out)
    return folders


def main(argv=None) -> int:
    try:
        run(argv)
    except (FileNotFoundError, ValueError) as exc:
        print(f"report: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
