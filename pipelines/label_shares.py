"""Each label's share in a written partition, with pyarrow alone: the end-of-run summary's label
lines (pipelines.console.label_lines). The labeling job must run where polars and matplotlib are not
installed (a GPU worker's image); pipelines.report computes the same shares with polars for its
tables and charts, and tests/test_label_shares.py holds the two to the same figures.
"""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from models.heads import column_suffix
from models.classifiers import PUBLISHED_NAMES as CLASSIFIER_NAMES
from models.classifiers.politics import CLASSES as POLITICS_CLASSES, TOPICS as POLITICS_TOPICS
from models.classifiers.sentiment import LABELS as SENTIMENT_LABELS
from transforms.contract import SHARD_GLOB

STARS = (1, 2, 3, 4, 5)
LABEL_COLUMN = {  # one column per classifier that is null exactly where the row had no text
    "politics": f"politics_{POLITICS_TOPICS[0]}",
    "stars": "stars",
    "sentiment": "sentiment",
    "emotion": "emotions",
}
_LABEL_COLUMNS = (*(f"politics_{t}" for t in POLITICS_TOPICS), "stars", "sentiment", "emotions")


class TooManyRows(Exception):
    def __init__(self, rows: int):
        super().__init__(f"{rows:,} rows")
        self.rows = rows


def read_label_columns(directory: str, max_rows: int | None = None) -> tuple[pa.Table, list[str]]:
    """The label columns of every labels-*.parquet under directory (local, gs://, s3://), files with
    fewer columns filled with nulls, and every column name the files have (the emotion_<label> score
    columns name the labels no row carries). FileNotFoundError without files; TooManyRows (read from
    the files' footers alone) over max_rows."""
    from apache_beam.io.filesystems import FileSystems

    pattern = FileSystems.join(directory, SHARD_GLOB)
    paths = sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)
    if not paths:
        raise FileNotFoundError(f"no {SHARD_GLOB} under {directory}")
    handles = [FileSystems.open(path) for path in paths]
    try:
        files = [pq.ParquetFile(handle) for handle in handles]
        rows = sum(f.metadata.num_rows for f in files)
        if max_rows is not None and rows > max_rows:
            raise TooManyRows(rows)
        names = list(dict.fromkeys(name for f in files for name in f.schema_arrow.names))
        tables = [f.read(columns=[c for c in _LABEL_COLUMNS if c in f.schema_arrow.names]) for f in files]
    finally:
        for handle in handles:
            handle.close()
    return pa.concat_tables(tables, promote_options="permissive"), names


def _equal_count(column: pa.ChunkedArray, value) -> int:
    return pc.sum(pc.equal(column, value)).as_py() or 0


def _share(count: int, total: int) -> float:
    return count / total if total else 0.0


def emotion_counts(emotions: pa.ChunkedArray, column_names: list[str]) -> list[tuple[str, int]]:
    """(label, rows carrying it) for every emotion label, most frequent first (ties by name): those
    seen in `emotions`, then the emotion_<label> columns no seen label accounts for, at 0."""
    flat = pa.table({"row": pc.list_parent_indices(emotions), "label": pc.list_flatten(emotions)})
    flat = flat.filter(pc.is_valid(flat["label"]))
    grouped = flat.group_by("label").aggregate([("row", "count_distinct")]).to_pydict()
    counts = dict(zip(grouped["label"], grouped["row_count_distinct"]))
    covered = {column_suffix(label) for label in counts}
    for name in column_names:
        if name.startswith("emotion_") and name[len("emotion_"):] not in covered:
            counts.setdefault(name[len("emotion_"):], 0)
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def label_shares(table: pa.Table, column_names: list[str] | None = None) -> dict[str, list[tuple[str, int, float]]]:
    """classifier -> [(label, count, share)] for each classifier with columns in the table, as
    pipelines.report.label_shares: politics pools the 12 topics' cells (share of all labeled cells);
    stars and sentiment: share of the rows with a label; emotion: share of the rows with `emotions`
    carrying each label."""
    column_names = column_names if column_names is not None else table.column_names
    present = [name for name in CLASSIFIER_NAMES if LABEL_COLUMN[name] in table.column_names]
    shares: dict[str, list[tuple[str, int, float]]] = {}
    if "politics" in present:
        topics = [table[f"politics_{t}"] for t in POLITICS_TOPICS if f"politics_{t}" in table.column_names]
        counts = [sum(_equal_count(column, cls) for column in topics) for cls in POLITICS_CLASSES]
        shares["politics"] = [(cls, n, n / max(sum(counts), 1)) for cls, n in zip(POLITICS_CLASSES, counts)]
    for name, values in (("stars", STARS), ("sentiment", SENTIMENT_LABELS)):
        if name in present:
            column = table[LABEL_COLUMN[name]]
            labeled = len(column) - column.null_count
            shares[name] = [(str(v), n, _share(n, labeled)) for v in values for n in [_equal_count(column, v)]]
    if "emotion" in present:
        emotions = table["emotions"]
        labeled = len(emotions) - emotions.null_count
        shares["emotion"] = [(label, n, _share(n, labeled)) for label, n in emotion_counts(emotions, column_names)]
    return {name: part for name, part in shares.items() if part}
