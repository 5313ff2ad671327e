"""Each label's share in a written partition, with pyarrow alone: the end-of-run summary's label
lines (pipelines.console.label_lines). The labeling job must run where polars and matplotlib are not
installed (a GPU worker's image); pipelines.report computes the same shares with polars for its
tables and charts, and tests/test_label_shares.py holds the two to the same figures.

Which classifiers a partition has: the published ones whose label column it has (each classifier's
report hooks name that column, models.classifiers.reporting), then every other classifier the files'
`label_corpus.checkpoints` metadata names (pipelines.labeling.output_schema writes it) whose label
column is there. A file without that metadata has only the published classifiers recognized.
"""
from __future__ import annotations

import json
from typing import Iterable, Mapping, Optional, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from models.classifiers import PUBLISHED_NAMES, classifier_for, name_problem
from transforms.contract import CHECKPOINTS_METADATA_KEY, SHARD_GLOB

CHECKPOINTS_KEY = CHECKPOINTS_METADATA_KEY.encode()  # pipelines.labeling.output_schema: {name: {checkpoint, revision}}


class TooManyRows(Exception):
    def __init__(self, rows: int):
        super().__init__(f"{rows:,} rows")
        self.rows = rows


def named_classifiers(metadata: Optional[Mapping[bytes, bytes]]) -> list[str]:
    """The classifiers a Parquet file's key-value metadata names, in run order ([] without it, or
    where it cannot be read: such a file's classifiers are recognized by their columns)."""
    raw = (metadata or {}).get(CHECKPOINTS_KEY)
    try:
        named = json.loads(raw) if raw else {}
    except ValueError:
        return []
    return [name for name in named if isinstance(name, str) and name_problem(name) is None] \
        if isinstance(named, dict) else []


def classifiers_present(column_names: Iterable[str], named: Sequence[str] = ()) -> list[str]:
    """The classifiers whose columns are among column_names: the published ones, in run order,
    recognized by their label column; then the other classifiers of `named` (the files' metadata)
    whose label column is there."""
    columns = set(column_names)
    others = [name for name in dict.fromkeys(named) if name not in PUBLISHED_NAMES]
    return [name for name in (*PUBLISHED_NAMES, *others)
            if classifier_for(name).report.label_column(name) in columns]


def in_report_order(names: Iterable[str]) -> list[str]:
    """The published classifiers among names in run order, then the others in the order given."""
    names = list(dict.fromkeys(names))
    return [n for n in PUBLISHED_NAMES if n in names] + [n for n in names if n not in PUBLISHED_NAMES]


def read_label_columns(directory: str, max_rows: int | None = None) -> tuple[pa.Table, list[str], list[str]]:
    """The label columns of every labels-*.parquet under directory (local, gs://, s3://), files with
    fewer columns filled with nulls; every column name the files have (multi-label score columns name
    the labels no row carries); and the classifiers present. FileNotFoundError without files;
    TooManyRows (read from the files' footers alone) over max_rows."""
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
        named = [name for f in files for name in named_classifiers(f.schema_arrow.metadata)]
        classifiers = classifiers_present(names, named)
        wanted = list(dict.fromkeys(column for name in classifiers
                                    for column in classifier_for(name).report.arrow_columns(name, names)))
        tables = [f.read(columns=[c for c in wanted if c in f.schema_arrow.names]) for f in files]
    finally:
        for handle in handles:
            handle.close()
    return pa.concat_tables(tables, promote_options="permissive"), names, classifiers


def label_shares(table: pa.Table, column_names: list[str] | None = None, classifiers: Sequence[str] | None = None
                 ) -> dict[str, list[tuple[str, int, float]]]:
    """classifier -> [(label, count, share)] for each classifier present (default: those whose
    columns the table has, published ones only), as pipelines.report.label_shares computes them
    (each classifier's `label_shares_arrow` hook)."""
    column_names = column_names if column_names is not None else table.column_names
    if classifiers is None:
        classifiers = classifiers_present(table.column_names)
    shares = {name: classifier_for(name).report.label_shares_arrow(table, name, column_names) for name in classifiers}
    return {name: part for name, part in shares.items() if part}
