"""Summarize a labeled output: tables (Markdown and CSV), PNG charts, and a text table.

    python -m pipelines.report DIR [DIR ...] [--examples 3] [--trend-dir DIR]

The columns it reads are described in docs/output-schema.md.

DIR holds the labeling pipeline's labels-*.parquet (local, gs:// or s3://). Each DIR gets
DIR/_report/: report.md, one CSV per table and one PNG per chart. With several DIRs (date
partitions), each label's share per partition also goes, as a CSV, a Markdown table and a
line chart, to --trend-dir (default: the latest partition's _report/). A partition's date is
the first YYYY-MM-DD in its path, else the folder name. A classifier that did not run on a date
(the partition has none of its columns) is blank there, a gap in the chart; one that ran and gave
no post a label (routing kept every post from it) is 0 (shares_over_dates).

The classifiers present are the published four, recognized by their columns, and the generic
ones the files' label_corpus.checkpoints metadata names (pipelines.label_shares). Each classifier's
tables, charts, most confident examples, same-label warnings and label shares are its report
hooks (models/classifiers/<name>/report.py, protocol in models.classifiers.reporting); this module
iterates over the classifiers present and does the rest: reading, Markdown and CSV, PNGs.
The aggregations are pure functions of a polars DataFrame.
"""
from __future__ import annotations

import argparse
import io
import re
import sys
from typing import Sequence

import polars as pl
import pyarrow.parquet as pq

from pipelines import console  # noqa: F401  first: keeps Beam's import-time warning off the terminal
from apache_beam.io.filesystems import FileSystems

from models.classifiers import classifier_for
from models.classifiers.reporting import DEFAULT_BAR_COLOR, Section, pyplot, share, share_bars
from pipelines.label_shares import classifiers_present as classifiers_among, in_report_order, named_classifiers
from transforms.contract import SHARD_GLOB
from transforms import stores
from transforms.partition import read_manifest

REPORT_FOLDER = "_report"
EXAMPLE_TEXT_CHARS = 100
UNIFORM_SHARE, UNIFORM_MIN_ROWS = 0.98, 20


# ---------------------------------------------------------------- aggregations (pure)

def classifiers_present(df: pl.DataFrame, named: Sequence[str] = ()) -> list[str]:
    """The classifiers with columns in df: the published ones by their columns, the others named
    in `named` (the files' label_corpus.checkpoints metadata, pipelines.label_shares)."""
    return classifiers_among(df.columns, named)


def _present(df: pl.DataFrame, classifiers: Sequence[str] | None) -> list[str]:
    return classifiers_present(df) if classifiers is None else list(classifiers)


def label_column(name: str) -> str:
    """The column of classifier `name` that is null exactly where it labeled no row."""
    return classifier_for(name).report.label_column(name)


def summary(df: pl.DataFrame, classifiers: Sequence[str] | None = None) -> pl.DataFrame:
    """One row per classifier in the output: rows labeled, rows left null, null share."""
    total = df.height
    records = []
    for name in _present(df, classifiers):
        nulls = df.get_column(label_column(name)).null_count()
        records.append({"classifier": name, "rows": total, "labeled_rows": total - nulls,
                        "null_rows": nulls, "null_share": share(nulls, total)})
    return pl.DataFrame(records, schema={"classifier": pl.String, "rows": pl.Int64, "labeled_rows": pl.Int64,
                                         "null_rows": pl.Int64, "null_share": pl.Float64})


MOST_CONFIDENT_SCHEMA = {"classifier": pl.String, "label": pl.String, "rank": pl.Int64,
                         "id": pl.String, "score": pl.Float64, "text": pl.String}


def most_confident(df: pl.DataFrame, k: int = 3, classifiers: Sequence[str] | None = None) -> pl.DataFrame:
    """The k rows with the highest score for each label of each classifier (ties: smaller id first),
    as its `most_confident` hook picks them: which labels, and which score ranks each (a multi-label
    classifier ranks the rows carrying the label by that label's probability)."""
    parts = []
    for name in _present(df, classifiers):
        for label, top in classifier_for(name).report.most_confident(df, name, k):
            parts.append(top.with_columns(pl.lit(name).alias("classifier"), pl.lit(label).alias("label"),
                                          pl.int_range(1, top.height + 1, dtype=pl.Int64).alias("rank")))
    if not parts:
        return pl.DataFrame(schema=MOST_CONFIDENT_SCHEMA)
    return pl.concat([p.select(list(MOST_CONFIDENT_SCHEMA)) for p in parts])


def language_shares(df: pl.DataFrame) -> pl.DataFrame:
    """Rows per `lang` value and their share, most common first (empty without a `lang` column)."""
    schema = {"lang": pl.String, "count": pl.Int64, "share": pl.Float64}
    if "lang" not in df.columns:
        return pl.DataFrame(schema=schema)
    counts = df.group_by("lang").len("count").sort(["count", "lang"], descending=[True, False])
    return counts.with_columns((pl.col("count") / max(df.height, 1)).alias("share")).cast(schema)


def uniform_label_warnings(df: pl.DataFrame, share: float = UNIFORM_SHARE, min_rows: int = UNIFORM_MIN_ROWS,
                           classifiers: Sequence[str] | None = None) -> list[str]:
    """Warnings for classifiers that gave (nearly) every labeled row the same label: the mark of a
    broken, random or mismatched checkpoint (each classifier's `uniform_warnings` hook says when)."""
    warnings = [warning for name in _present(df, classifiers)
                for warning in classifier_for(name).report.uniform_warnings(df, name, share, min_rows)]
    return [f"{w}: nearly every post got the same label; check the checkpoint" for w in warnings]


LABEL_SHARES_SCHEMA = {"classifier": pl.String, "label": pl.String, "count": pl.Int64, "share": pl.Float64}


def label_shares(df: pl.DataFrame, classifiers: Sequence[str] | None = None) -> pl.DataFrame:
    """Each label's share in one partition, long format (classifier, label, count, share), as each
    classifier's `label_shares` hook counts it (a classifier of several topics pools their cells)."""
    parts = [classifier_for(name).report.label_shares(df, name).select(pl.lit(name).alias("classifier"), "label",
                                                                       "count", "share")
             for name in _present(df, classifiers)]
    return pl.concat([p.cast(LABEL_SHARES_SCHEMA) for p in parts]) if parts else pl.DataFrame(schema=LABEL_SHARES_SCHEMA)


def shares_over_dates(partitions: dict[str, pl.DataFrame], classifiers: dict[str, Sequence[str]] | None = None
                      ) -> pl.DataFrame:
    """label_shares of each partition, with a `date` column, in date order. A partition's
    classifiers are `classifiers[date]`, default those its columns show: the classifiers that ran
    on that date (their columns are in its files, carried by --skip-if-done included; a run writes
    every column of each classifier it has, null where routing or an empty text kept a post from
    it). Where one of them gave no post a label, its count and share are 0 there; where a
    classifier did not run on a date (the partition has no columns of it: labeled before it was
    added, or with --only), its count and share are null there: a blank in the tables, a gap in the
    chart, until a backfill labels that date."""
    classifiers = classifiers or {}
    ran = {date: _present(df, classifiers.get(date)) for date, df in partitions.items()}
    frames = [label_shares(df, ran[date]).with_columns(pl.lit(date).alias("date"))
              for date, df in sorted(partitions.items())]
    if not frames:
        return pl.DataFrame(schema={"date": pl.String, **LABEL_SHARES_SCHEMA})
    long = pl.concat(frames)
    labels = long.select("classifier", "label").unique(maintain_order=True).with_row_index("order")
    grid = pl.DataFrame({"date": sorted(partitions)}, schema={"date": pl.String}).join(labels, how="cross")
    ran_on = pl.DataFrame([(date, name) for date, names in ran.items() for name in names], orient="row",
                          schema={"date": pl.String, "classifier": pl.String}).with_columns(pl.lit(True).alias("ran"))
    return (grid.join(long, on=["date", "classifier", "label"], how="left")
            .join(ran_on, on=["date", "classifier"], how="left")
            .with_columns(pl.when(pl.col("ran")).then(pl.col("count").fill_null(0)).alias("count"),
                          pl.when(pl.col("ran")).then(pl.col("share").fill_null(0.0)).alias("share"))
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


def sections(df: pl.DataFrame, examples: int, classifiers: Sequence[str] | None = None) -> list[Section]:
    """The summary, the languages, each classifier's sections (its `sections` hook), the most
    confident examples."""
    present = _present(df, classifiers)
    out = [Section("summary", "Rows per classifier", summary(df, present))]
    if "lang" in df.columns:
        out.append(Section("languages", "Languages (the lang column)", language_shares(df)))
    for name in present:
        out += classifier_for(name).report.sections(df, name)
    out.append(Section("most_confident", f"Most confident examples ({examples} per label)",
                       most_confident(df, examples, present), on_terminal=False))
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


MAX_LANGUAGE_BARS = 12
# Lines of a trend chart: matplotlib's 10 qualitative colours, then the same colours dashed, with a
# marker of their own, so that 14 labels of one classifier (or more) stay apart.
LINE_STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def line_style(index: int) -> dict:
    """The colour, line style and marker of a trend chart's index-th line: distinct for the first 40."""
    import matplotlib

    colors = matplotlib.colormaps["tab10"].colors
    return {"color": colors[index % len(colors)], "linestyle": LINE_STYLES[(index // len(colors)) % len(LINE_STYLES)],
            "marker": MARKERS[index % len(MARKERS)]}


def summary_chart(section: Section, df: pl.DataFrame):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3))
    table = section.table
    ax.bar(table["classifier"].to_list(), table["labeled_rows"].to_list(), color=DEFAULT_BAR_COLOR, label="labeled")
    ax.bar(table["classifier"].to_list(), table["null_rows"].to_list(), bottom=table["labeled_rows"].to_list(),
           color="#bbbbbb", label="null (no text, or not its language)")
    ax.set_ylabel("rows")
    ax.set_ylim(0, max(df.height, 1) * 1.25)
    ax.set_title(f"Rows per classifier ({df.height} rows)")
    ax.legend(ncol=2, loc="upper center")
    return fig


def languages_chart(section: Section, df: pl.DataFrame):
    """The most common languages' shares, each written on its bar (a language of 0.3% is a bar too thin to see)."""
    plt = pyplot()
    table = section.table
    labels = [str(label) for label in table["lang"].to_list()]
    shown = labels[:MAX_LANGUAGE_BARS]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    share_bars(ax, shown, table["share"].to_list()[:len(shown)], [DEFAULT_BAR_COLOR] * len(shown))
    ax.set_xlabel("lang")
    ax.set_ylabel("share of rows")
    title = section.title
    if len(labels) > MAX_LANGUAGE_BARS:
        title = f"Languages: the {MAX_LANGUAGE_BARS} most common of {len(labels)} (the lang column)"
    ax.set_title(title)
    return fig


OWN_CHARTS = {"summary": summary_chart, "languages": languages_chart}  # the sections of no classifier


def chart(section: Section, df: pl.DataFrame) -> bytes | None:
    """The PNG for a section, or None where it has no chart."""
    draw = section.draw if section.draw is not None else OWN_CHARTS.get(section.name)
    fig = draw(section, df) if draw is not None else None
    return None if fig is None else _figure_bytes(fig)


def trend_chart(trend: pl.DataFrame) -> bytes:
    plt = pyplot()
    classifiers = in_report_order(trend["classifier"].to_list())
    fig, axes = plt.subplots(len(classifiers), 1, figsize=(8, 3 * max(len(classifiers), 1)), squeeze=False)
    for ax, name in zip(axes[:, 0], classifiers):
        hooks = classifier_for(name).report
        part = trend.filter(pl.col("classifier") == name)
        for index, label in enumerate(part["label"].unique(maintain_order=True).to_list()):
            line = part.filter(pl.col("label") == label).sort("date")
            # NaN where the classifier did not run: matplotlib breaks the line there (no line to 0),
            # and the marker shows a date that has no neighbour to draw a line to
            shares = line["share"].cast(pl.Float64).fill_null(float("nan")).to_numpy()
            style = {"marker": "o", **(hooks.trend_style(label) or line_style(index))}
            ax.plot(line["date"].to_list(), shares, label=label, **style)
        ax.set_title(hooks.trend_title(name))
        ax.set_ylabel("share")
        ax.set_ylim(-0.05, 1.05)  # a line at 0 or 1 stays clear of the frame
        ax.legend(fontsize=7, ncol=2, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _figure_bytes(fig)


# ---------------------------------------------------------------- reading and writing

def read_labeled(directory: str) -> tuple[pl.DataFrame, list[str]]:
    """The rows of every labels-*.parquet under directory, and the classifiers they have (their
    columns, and the files' label_corpus.checkpoints metadata: pipelines.label_shares)."""
    pattern = FileSystems.join(directory, SHARD_GLOB)
    paths = sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)
    if not paths:
        raise FileNotFoundError(f"no {SHARD_GLOB} under {directory}")
    frames, named = [], []
    for path in paths:
        with FileSystems.open(path) as handle:
            data = io.BytesIO(handle.read())
        named += named_classifiers(pq.read_schema(data).metadata)
        data.seek(0)
        frames.append(pl.read_parquet(data))
    df = pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]
    return df, classifiers_present(df, named)


def read_partition(directory: str) -> pl.DataFrame:
    return read_labeled(directory)[0]


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


def write_report(directory: str, df: pl.DataFrame, examples: int = 3, out=sys.stdout,
                 classifiers: Sequence[str] | None = None) -> str:
    """Writes directory/_report/ (report.md, CSVs, PNGs), prints the text tables; returns the folder.
    classifiers: those of the partition (read_labeled), default those its columns show."""
    folder = FileSystems.join(directory, REPORT_FOLDER)
    classifiers = _present(df, classifiers)
    parts = sections(df, examples, classifiers)
    manifest = read_manifest(directory, suspect=True)
    md = [f"# Labeling report: {directory}", "", *status_lines(manifest, df.height), ""]
    print(f"{directory}: {df.height} rows", file=out)
    if manifest is None:
        print("warning: no _SUCCESS (or no _manifest.json): the partition is incomplete or still being written",
              file=out)
    elif manifest.get("problem"):
        print(f"warning: no _SUCCESS: the run does not look like success: {manifest['problem']}", file=out)
    warnings = uniform_label_warnings(df, classifiers=classifiers)
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


def write_trend(folder: str, partitions: dict[str, pl.DataFrame], out=sys.stdout,
                classifiers: dict[str, Sequence[str]] | None = None) -> pl.DataFrame:
    trend = shares_over_dates(partitions, classifiers)
    _write(FileSystems.join(folder, "label_shares_over_dates.csv"), trend.write_csv().encode("utf-8"))
    _write(FileSystems.join(folder, "label_shares_over_dates.png"), trend_chart(trend))
    md = ["# Label shares over dates", "", "![label shares over dates](label_shares_over_dates.png)", ""]
    for name in in_report_order(trend["classifier"].to_list()):
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


def run(argv=None, out=None) -> dict[str, str]:
    """Report on each DIR; returns {DIR: its report folder} (and 'trend' with several DIRs).
    out: where the tables are printed (default: sys.stdout as it is at the call)."""
    out = out or sys.stdout
    args = parse_args(argv)
    stores.configure()  # the stores' settings from the environment (deploy/README.md, Object stores)
    stores.check([*args.dirs, args.trend_dir])
    read = {directory: read_labeled(directory) for directory in args.dirs}
    folders = {directory: write_report(directory, df, args.examples, out, classifiers)
               for directory, (df, classifiers) in read.items()}
    if len(read) > 1:
        dated = {partition_date(d): df for d, (df, _) in read.items()}
        if len(dated) < len(read):
            raise ValueError(f"partitions share a date: {[partition_date(d) for d in read]}")
        latest = max(read, key=partition_date)
        folders["trend"] = args.trend_dir or FileSystems.join(latest, REPORT_FOLDER)
        write_trend(folders["trend"], dated, out, {partition_date(d): named for d, (_, named) in read.items()})
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
