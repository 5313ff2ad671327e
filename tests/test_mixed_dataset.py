"""A dataset whose partitions have different classifiers (issue 28), made by the real job with tiny
checkpoints: 2024-06-01 labeled with sentiment and stars; 2024-06-02 (English posts only, so stars
runs on no post) with sentiment and stars, then a classifier of one's own, `mytask`, added with
--skip-if-done; 2024-06-03 with sentiment and mytask, no stars. The lines docs/output-schema.md gives
(taken from the file itself) read it with the real polars, pyarrow and DuckDB: every column of every
file, each row as pyarrow's own reader reads it from its file (null where its partition lacks the
column), counts reconciled with each partition's _manifest.json. The BigQuery statement has the
columns of every file; the report's trend is blank where a classifier did not run and 0 where it ran
on no post; a backfill with --skip-if-done makes the plain readers work again."""
from __future__ import annotations

import glob
import io
import json
import os
import re
import shutil
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from models.tiny_checkpoints import build_tiny_checkpoint
from pipelines import dataset, report
from pipelines.label_corpus import run

DOC = Path(__file__).resolve().parents[1] / "docs" / "output-schema.md"
ENGLISH = ["the vote is today", "i love this hotel", "taxes again", "what a game", "rain all day"]
CHINESE = ["酒店房间很干净，服务也很周到", "送餐速度太慢了，菜都凉了"]
POSTS = {"2024-06-01": ENGLISH[:3] + CHINESE, "2024-06-02": ENGLISH, "2024-06-03": ENGLISH[1:] + CHINESE[:1]}
CLASSIFIERS = ("sentiment", "stars", "mytask")  # each one's label column is its name


def label(root: Path, date: str, only: str, mytask: str | None = None) -> None:
    argv = ["--date", date, "--input", str(root / "posts" / "dt={date}" / "*.jsonl"),
            "--output", str(root / "labels" / "dt={date}"), "--models", str(root / "models.json"),
            "--only", only, "--device", "cpu", "--skip-if-done"]
    run(argv + (["--model", f"mytask={mytask}"] if mytask else []))


@pytest.fixture(scope="module")
def mytask(tmp_path_factory) -> str:
    return str(build_tiny_checkpoint("mytask", tmp_path_factory.mktemp("own"), seed=21,
                                     emotion_labels=["low", "mid", "high"]))


@pytest.fixture(scope="module")
def mixed(tiny_models_file, mytask, tmp_path_factory) -> Path:
    """The dataset root: posts/dt=*/, labels/dt=*/ and models.json."""
    root = tmp_path_factory.mktemp("mixed")
    shutil.copy(tiny_models_file, root / "models.json")
    for date, texts in POSTS.items():
        folder = root / "posts" / f"dt={date}"
        folder.mkdir(parents=True)
        (folder / "a.jsonl").write_text("".join(json.dumps({"id": f"{date}-{i}", "text": text}, ensure_ascii=False)
                                                + "\n" for i, text in enumerate(texts)), encoding="utf-8")
    label(root, "2024-06-01", "sentiment,stars")
    label(root, "2024-06-02", "sentiment,stars")
    label(root, "2024-06-02", "sentiment,stars,mytask", mytask)
    label(root, "2024-06-03", "sentiment,mytask", mytask)
    return root


def manifests(root: Path) -> dict[str, dict]:
    return {date: json.loads((root / "labels" / f"dt={date}" / "_manifest.json").read_text()) for date in POSTS}


def file_rows(root: Path) -> tuple[list[str], dict[str, dict]]:
    """Every column any committed shard has (first seen first), and each row by id as pyarrow's
    Parquet reader reads it from its own file, with its partition's dt."""
    columns, rows = [], {}
    for path in sorted(glob.glob(str(root / "labels" / "dt=*" / "labels-*.parquet"))):
        table = pq.read_table(path)
        columns += [name for name in table.column_names if name not in columns]
        date = re.search(r"dt=([\d-]+)", path).group(1)
        rows.update({row["id"]: {**row, "dt": date} for row in table.to_pylist()})
    return columns, rows


def doc_block(language: str, containing: str) -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    (block,) = [b for b in blocks if containing in b]
    return block


def check_reads_every_column(read: list[dict], read_columns: list[str], root: Path) -> None:
    columns, expected = file_rows(root)
    assert set(read_columns) == {*columns, "dt"}
    assert len(read) == len(expected) == sum(len(texts) for texts in POSTS.values())
    for row in read:
        reference = expected[row["id"]]
        assert {**row, "dt": str(row["dt"])} == {column: reference.get(column) for column in [*columns, "dt"]}
    for date, manifest in manifests(root).items():
        rows = [row for row in read if str(row["dt"]) == date]
        assert len(rows) == manifest["rows_written"]
        for name in CLASSIFIERS:  # a classifier the partition lacks: every row null
            labeled = manifest["by_classifier"].get(name, {}).get("labeled", 0)
            assert sum(row[name] is not None for row in rows) == labeled, (date, name)
    # the dataset is mixed as described: each classifier labels some post, and some partition lacks it
    assert all(any(row[name] is not None for row in read) for name in CLASSIFIERS)
    assert [set(m["by_classifier"]) for m in manifests(root).values()] == [
        {"sentiment", "stars"}, {"sentiment", "stars", "mytask"}, {"sentiment", "mytask"}]


def test_the_docs_python_lines_read_every_column_with_pyarrow_and_polars(mixed, monkeypatch):
    monkeypatch.chdir(mixed)
    names = {}
    exec(doc_block("python", "unify_schemas"), names)
    table, df = names["table"], names["df"]
    check_reads_every_column(table.to_pylist(), table.column_names, mixed)
    check_reads_every_column(df.to_dicts(), df.columns, mixed)


def test_the_docs_duckdb_line_reads_every_column_and_counts_as_the_manifests(mixed, monkeypatch):
    monkeypatch.chdir(mixed)
    (query,) = [line for line in doc_block("sql", "union_by_name").splitlines() if line.startswith("SELECT")]
    counted = {str(dt): (rows, labeled) for dt, rows, labeled in duckdb.sql(query).fetchall()}
    assert counted == {date: (m["rows_written"], m["by_classifier"].get("mytask", {}).get("labeled", 0))
                       for date, m in manifests(mixed).items()}
    source = re.search(r"FROM (read_parquet\(.*?\)) GROUP", query).group(1)
    result = duckdb.sql(f"SELECT * FROM {source}")
    check_reads_every_column([dict(zip(result.columns, row)) for row in result.fetchall()], result.columns, mixed)


def test_the_plain_readers_take_one_files_columns_as_the_docs_say(mixed, monkeypatch):
    monkeypatch.chdir(mixed)
    with pytest.raises(pl.exceptions.SchemaError, match="extra column in file outside of expected schema: mytask"):
        pl.scan_parquet("labels/**/*.parquet", hive_partitioning=True).collect()
    plain = ds.dataset("labels/", format="parquet", partitioning="hive").to_table()  # the first file's columns
    assert "mytask" not in plain.column_names
    no_stars = plain.filter(ds.field("dt") == "2024-06-03").column("stars")  # filled with nulls
    assert no_stars.null_count == len(no_stars) == len(POSTS["2024-06-03"])
    plain_duckdb = "read_parquet('labels/**/*.parquet', hive_partitioning = true)"
    with pytest.raises(duckdb.BinderException, match='Referenced column "mytask" not found'):
        duckdb.sql(f"SELECT count(mytask) FROM {plain_duckdb}").fetchall()
    with pytest.raises(duckdb.InvalidInputException, match='schema mismatch in glob: column "stars"'):
        duckdb.sql(f"SELECT * FROM {plain_duckdb}").fetchall()  # 2024-06-03 has no stars
    # the docs' alternative for local files: one scan per file, stacked
    files = glob.glob("labels/**/*.parquet", recursive=True)
    df = pl.concat([pl.scan_parquet(f, hive_partitioning=True) for f in files], how="diagonal_relaxed").collect()
    check_reads_every_column(df.to_dicts(), df.columns, mixed)


def test_the_bigquery_statement_has_every_column_of_every_file(mixed):
    out = io.StringIO()
    assert dataset.main([str(mixed / "labels"), "--table", "PROJECT.DATASET.labels",
                         "--uri-prefix", "gs://BUCKET/labels"], out=out) == 0
    statement = out.getvalue().strip()
    declared = re.findall(r"^  `(\w+)` ([A-Z0-9<>]+),?$", statement, re.M)
    columns, _ = file_rows(mixed)
    assert [name for name, _ in declared] == columns
    types = {pq.read_schema(f).field(name).type for f in glob.glob(str(mixed / "labels/*/*.parquet"))
             for name in pq.read_schema(f).names}
    assert types == {pa.string(), pa.float32(), pa.int8()}
    assert {name: kind for name, kind in declared} == {
        "id": "STRING", "text": "STRING", "lang": "STRING", "clean_text": "STRING", "stars": "INT64",
        "stars_score": "FLOAT64", "sentiment": "STRING", "sentiment_score": "FLOAT64", "mytask": "STRING",
        "mytask_score": "FLOAT64"}
    # the docs show this very statement
    assert statement == "\n".join(line for line in doc_block("sql", "EXTERNAL TABLE").strip().splitlines()
                                  if not line.startswith("--"))


def test_the_bigquery_statement_reads_lists_as_arrays_and_a_changed_type_or_no_folder_is_one_line(tmp_path,
                                                                                                   capsys):
    statement = dataset.bigquery_ddl(pa.schema([("emotions", pa.list_(pa.string())), ("n", pa.int64())]),
                                     "p.d.t", "gs://b/labels/")
    assert "`emotions` ARRAY<STRING>" in statement and "`n` INT64" in statement
    assert "enable_list_inference = true" in statement and "uris = ['gs://b/labels/*.parquet']" in statement
    for date, mytask in (("2024-06-01", pa.array(["low"])), ("2024-06-02", pa.array([["low", "high"]]))):
        (tmp_path / f"dt={date}").mkdir()
        pq.write_table(pa.table({"id": ["1"], "mytask": mytask}),
                       tmp_path / f"dt={date}" / "labels-00000-of-00001.parquet")
    assert dataset.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mytask" in err and "--skip-if-done" in err
    assert dataset.main([str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err == f"dataset: {tmp_path / 'nowhere'} does not exist\n"


def test_the_trend_is_blank_where_a_classifier_did_not_run_and_0_where_it_ran_on_no_post(mixed, monkeypatch):
    monkeypatch.setattr(report, "_figure_bytes", lambda fig: b"")
    partitions = [str(mixed / "labels" / f"dt={date}") for date in POSTS]
    trend_dir = report.run(partitions, out=io.StringIO())["trend"]
    trend = pl.read_csv(os.path.join(trend_dir, "label_shares_over_dates.csv"), schema_overrides={"label": pl.String})
    for date, manifest in manifests(mixed).items():
        part = trend.filter(pl.col("date") == date)
        # a classifier has figures on a date exactly where its partition's manifest says it ran
        assert set(part.filter(pl.col("share").is_not_null())["classifier"]) == set(manifest["by_classifier"])
        assert part.filter(pl.col("share").is_null())["count"].null_count() == part["share"].null_count()
        for name, counts in manifest["by_classifier"].items():  # single-label: one label per labeled post
            assert part.filter(pl.col("classifier") == name)["count"].sum() == counts["labeled"]
    stars = trend.filter(pl.col("classifier") == "stars")
    assert stars.filter(pl.col("date") == "2024-06-02")["share"].to_list() == [0.0] * stars["label"].n_unique()
    assert stars.filter(pl.col("date") == "2024-06-03")["share"].null_count() == stars["label"].n_unique()


def test_a_backfill_with_skip_if_done_makes_the_schema_uniform_again(mixed, mytask, tmp_path, monkeypatch):
    root = tmp_path / "backfilled"
    shutil.copytree(mixed, root, ignore=shutil.ignore_patterns("_report"))
    before = manifests(root)
    for date in ("2024-06-01", "2024-06-03"):
        label(root, date, "sentiment,stars,mytask", mytask)
    after = manifests(root)
    assert (after["2024-06-01"]["reuse"]["rerun"], after["2024-06-01"]["inferences"]["sentiment"]) == (["mytask"], 0)
    assert after["2024-06-03"]["reuse"]["rerun"] == ["stars"]
    assert after["2024-06-02"] == before["2024-06-02"]
    schemas = {frozenset(pq.read_schema(f).names) for f in glob.glob(str(root / "labels/*/*.parquet"))}
    assert len(schemas) == 1
    monkeypatch.chdir(root)
    df = pl.scan_parquet("labels/**/*.parquet", hive_partitioning=True).collect()  # the plain line works again
    check_counts = {str(dt): n for dt, n in df.group_by("dt").agg(pl.col("mytask").is_not_null().sum()).rows()}
    assert check_counts == {date: m["by_classifier"]["mytask"]["labeled"] for date, m in after.items()}
    assert all(m["by_classifier"]["mytask"]["labeled"] > 0 for m in after.values())


@pytest.fixture
def s3_server(monkeypatch):
    """A moto S3 server on 127.0.0.1 (its endpoint), stopped by its PID."""
    import socket
    import subprocess
    import sys
    import time

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    pytest.fail("the moto S3 server did not start")
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_the_unified_schema_is_read_from_s3_too(mixed, s3_server):
    import boto3

    client = boto3.client("s3", endpoint_url=f"http://{s3_server}")
    client.create_bucket(Bucket="labels-bucket")
    for path in (mixed / "labels").rglob("*"):  # manifests, _SUCCESS and dead letters too, as the job leaves them
        if path.is_file():
            client.upload_file(str(path), "labels-bucket", str(path.relative_to(mixed)))
    remote = dataset.unified_schema(f"s3://labels-bucket/labels?endpoint_override={s3_server}&scheme=http")
    assert remote == dataset.unified_schema(str(mixed / "labels"))
    assert remote.names == file_rows(mixed)[0]
