"""A dataset of dated partitions read as one table, whatever classifiers each partition has.

    python -m pipelines.dataset ROOT [--table PROJECT.DATASET.labels] [--uri-prefix gs://BUCKET/labels]

prints the BigQuery CREATE EXTERNAL TABLE statement for the partitions under ROOT (local, gs://,
s3://) with every column any of them has.

Partitions labeled at different times have different columns: a classifier added later (with
--skip-if-done), dropped, or left out with --only. Readers that take their schema from one file
(polars' scan_parquet, pyarrow.dataset, DuckDB without union_by_name, BigQuery) then refuse the
other files or drop their columns. `unified_schema` is the schema that has every column of every
committed shard, the one to give them (docs/output-schema.md, "Every partition as one
table": the readers' lines); a file without a column reads as nulls there.
"""
from __future__ import annotations

import argparse
import sys

import pyarrow as pa
import pyarrow.dataset as ds

HIVE = "hive"  # dt=YYYY-MM-DD folders; pyarrow skips _- and .-prefixed files and folders (staging, manifests)


def unified_schema(root: str) -> pa.Schema:
    """Every column of every committed shard under root (the files' own columns: the partition
    folders' dt is not one), in the order the files first have them, without the files' metadata.
    ValueError where a column has one type in some partitions and another in others."""
    try:
        found = ds.dataset(root, format="parquet", partitioning=HIVE)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{root} does not exist") from exc
    schemas = [fragment.physical_schema.remove_metadata() for fragment in found.get_fragments()]
    if not schemas:
        raise FileNotFoundError(f"no Parquet files under {root}")
    try:
        return pa.unify_schemas(schemas)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ValueError(f"{exc}; relabel the partitions with the older type (--skip-if-done) or read them "
                         f"apart") from exc


# Parquet -> BigQuery, as BigQuery converts Parquet types
# (cloud.google.com/bigquery/docs/loading-data-cloud-storage-parquet#parquet_conversions)
SCALAR_TYPES = ((pa.types.is_string, "STRING"), (pa.types.is_large_string, "STRING"),
                (pa.types.is_integer, "INT64"), (pa.types.is_floating, "FLOAT64"),
                (pa.types.is_boolean, "BOOL"), (pa.types.is_timestamp, "TIMESTAMP"),
                (pa.types.is_date, "DATE"), (pa.types.is_binary, "BYTES"), (pa.types.is_large_binary, "BYTES"))


def bigquery_type(arrow_type: pa.DataType) -> str:
    """The BigQuery column type of an Arrow column (lists read as ARRAY with enable_list_inference)."""
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        return f"ARRAY<{bigquery_type(arrow_type.value_type)}>"
    for matches, name in SCALAR_TYPES:
        if matches(arrow_type):
            return name
    raise ValueError(f"no BigQuery type for {arrow_type}")


def bigquery_ddl(schema: pa.Schema, table: str, uri_prefix: str) -> str:
    """CREATE EXTERNAL TABLE over the dated partitions under uri_prefix with every column of
    `schema`: BigQuery takes a Parquet table's columns from one file unless it is given them."""
    columns = []
    for field in schema:
        try:
            columns.append(f"  `{field.name}` {bigquery_type(field.type)}")
        except ValueError as exc:
            raise ValueError(f"column {field.name}: {exc}") from exc
    prefix = uri_prefix.rstrip("/")
    lists = any(pa.types.is_list(field.type) or pa.types.is_large_list(field.type) for field in schema)
    options = [f"format = 'PARQUET'", f"uris = ['{prefix}/*.parquet']", f"hive_partition_uri_prefix = '{prefix}'",
               "require_hive_partition_filter = false"] + (["enable_list_inference = true"] if lists else [])
    return (f"CREATE OR REPLACE EXTERNAL TABLE `{table}` (\n" + ",\n".join(columns) + "\n)\n"
            "WITH PARTITION COLUMNS (dt DATE)\n"
            "OPTIONS (" + ",\n         ".join(options) + ");")


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m pipelines.dataset", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", metavar="ROOT", help="the folder of the dt=YYYY-MM-DD partitions")
    parser.add_argument("--table", default="PROJECT.DATASET.labels", help="the BigQuery table to create")
    parser.add_argument("--uri-prefix", help="where BigQuery finds the partitions (default: ROOT when it is on "
                                             "gs://, else gs://BUCKET/labels)")
    return parser.parse_args(argv)


def main(argv=None, out=sys.stdout) -> int:
    args = parse_args(argv)
    prefix = args.uri_prefix or (args.root if args.root.startswith("gs://") else "gs://BUCKET/labels")
    try:
        print(bigquery_ddl(unified_schema(args.root), args.table, prefix), file=out)
    except (FileNotFoundError, ValueError) as exc:
        print(f"dataset: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
