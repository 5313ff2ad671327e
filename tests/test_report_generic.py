"""The report and the summary's label lines for generic classifiers (any --model NAME other than the
four): a partition with the four plus a 3-class single-label `stance` and a 3-label multi-label
`toxicity`, in the schema and with the key-value metadata pipelines.labeling.output_schema writes,
labels from random logits. Every figure is checked against DuckDB's count of the same files."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from models.classifiers import PUBLISHED_NAMES, classifier_for
from models.heads import column_suffix
from pipelines import console, label_shares, report
from pipelines.labeling import output_schema
from tests.test_report import CONFIGS, PNG_MAGIC, md_tables, read_csv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STANCES = ["favor", "against", "none"]
# "Hate Speech": a label whose column suffix (toxicity_hate_speech) differs from it
TOXICITY = ["insult", "Hate Speech", "threat"]
GENERIC_CONFIGS = {"stance": {"id2label": dict(enumerate(STANCES))},
                   "toxicity": {"id2label": dict(enumerate(TOXICITY)), "problem_type": "multi_label_classification"}}
CONFIGS_ALL = {**CONFIGS, **GENERIC_CONFIGS}
ALL = (*PUBLISHED_NAMES, "stance", "toxicity")
K = 2


def classifiers_of_a_run(names=ALL) -> dict:
    """What output_schema reads of a run's classifiers: each one's head and checkpoint."""
    return {name: SimpleNamespace(head=classifier_for(name).head_for(CONFIGS_ALL[name]),
                                  checkpoint=SimpleNamespace(ref=f"/ckpt/{name}", revision=f"sha256:{name}"))
            for name in names}


def generic_table(n: int, seed: int, names=ALL, stance_only: str | None = None) -> pa.Table:
    """n rows in the output schema of a run of `names`; about a tenth without text; stance runs on
    English posts only (more nulls than the others), toxicity everywhere; stance_only: every
    stance the same label."""
    rng = np.random.default_rng(seed)
    run = classifiers_of_a_run(names)
    schema = output_schema({}, run)
    rows = []
    for i in range(n):
        text = "" if rng.random() < 0.1 else f"post {i} " + "word " * int(rng.integers(1, 9))
        lang = str(rng.choice(["en", "en", "ms", "zh"]))
        row = {"id": f"g{seed}-{i:04d}", "text": text, "lang": lang, "clean_text": text.strip()}
        for name, classifier in run.items():
            head = classifier.head
            if text and (name != "stance" or lang == "en"):
                logits = rng.normal(0, 2.5, size=(1, len(CONFIGS_ALL[name]["id2label"]))).astype(np.float32)
                if name == "toxicity":
                    logits[0, 2] -= 2.5  # threat: rarer than the others
                row.update(head.to_columns(logits)[0])
                if name == "stance" and stance_only:
                    row["stance"] = stance_only
            else:
                row.update(head.null_columns())
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=schema)


def write_partition(directory, table: pa.Table, shards: int = 2, metadata: bool = True) -> str:
    os.makedirs(directory, exist_ok=True)
    if not metadata:
        table = table.replace_schema_metadata(None)
    step = -(-table.num_rows // shards)
    for s in range(shards):
        pq.write_table(table.slice(s * step, step), os.path.join(directory, f"labels-{s:05d}-of-{shards:05d}.parquet"))
    return str(directory)


def sql(directory: str, query: str) -> list[tuple]:
    """A DuckDB query over the partition's files as the view `labels`."""
    con = duckdb.connect()
    con.execute(f"CREATE VIEW labels AS SELECT * FROM read_parquet('{directory}/labels-*.parquet')")
    return con.execute(query).fetchall()


def stance_counts(directory: str) -> dict[str, int]:
    return dict(sql(directory, "SELECT stance, count(*) FROM labels WHERE stance IS NOT NULL GROUP BY stance"))


def toxicity_counts(directory: str) -> dict[str, int]:
    counted = dict(sql(directory, "SELECT label, count(*) FROM (SELECT DISTINCT id, unnest(toxicity) AS label "
                                  "FROM labels) GROUP BY label"))
    return {label: counted.get(label, 0) for label in TOXICITY}


def non_null(directory: str, column: str) -> int:
    return sql(directory, f"SELECT count({column}) FROM labels")[0][0]


@pytest.fixture(scope="module")
def partition(tmp_path_factory):
    directory = write_partition(tmp_path_factory.mktemp("out") / "date=2024-06-01", generic_table(160, seed=11))
    terminal = io.StringIO()
    folder = report.run([directory, "--examples", str(K)], out=terminal)[directory]
    return directory, folder, terminal.getvalue()


def test_the_files_name_the_generic_classifiers_as_the_labeling_job_writes_them(partition):
    directory, _, _ = partition
    metadata = pq.read_schema(os.path.join(directory, "labels-00000-of-00002.parquet")).metadata
    assert list(json.loads(metadata[b"label_corpus.checkpoints"])) == list(ALL)
    assert label_shares.named_classifiers(metadata) == list(ALL)


def test_generic_classifiers_have_their_sections_csvs_and_charts(partition):
    directory, folder, terminal = partition
    for stem in ("stance_labels", "toxicity_labels", "toxicity_cooccurrence"):
        assert os.path.getsize(os.path.join(folder, f"{stem}.csv")) > 0
        with open(os.path.join(folder, f"{stem}.png"), "rb") as handle:
            assert handle.read(8) == PNG_MAGIC, stem
    md_text = open(os.path.join(folder, "report.md"), encoding="utf-8").read()
    assert "![stance: rows per label](stance_labels.png)" in md_text
    md = md_tables(os.path.join(folder, "report.md"))
    summary = md["Rows per classifier"]
    assert [r["classifier"] for r in summary] == list(ALL)  # the four first, then the run's order
    rows = sql(directory, "SELECT count(*) FROM labels")[0][0]
    for row in summary:
        labeled = non_null(directory, report.label_column(row["classifier"]))
        assert (int(row["rows"]), int(row["labeled_rows"]), int(row["null_rows"])) == (rows, labeled, rows - labeled)
    stance = next(r for r in summary if r["classifier"] == "stance")
    assert int(stance["labeled_rows"]) < int(next(r for r in summary if r["classifier"] == "toxicity")["labeled_rows"])
    assert "\nstance: rows per label\n" in terminal and "\ntoxicity: label frequencies" in terminal
    assert "same label" not in terminal


def test_the_single_label_table_counts_each_label_as_duckdb_does(partition):
    directory, folder, _ = partition
    expected = stance_counts(directory)
    assert sorted(expected) == sorted(STANCES)  # the random logits gave every stance
    labeled = non_null(directory, "stance")
    for rows in (md_tables(os.path.join(folder, "report.md"))["stance: rows per label"],
                 read_csv(os.path.join(folder, "stance_labels.csv"))):
        assert {r["label"]: int(r["count"]) for r in rows} == expected
        for r in rows:
            assert float(r["share"]) == pytest.approx(expected[r["label"]] / labeled, abs=1e-4)
        counts = [int(r["count"]) for r in rows]
        assert counts == sorted(counts, reverse=True)


def test_the_multi_label_frequencies_and_cooccurrence_count_as_duckdb_does(partition):
    directory, folder, _ = partition
    expected = toxicity_counts(directory)
    assert all(expected.values())
    labeled = non_null(directory, "toxicity")
    frequencies = md_tables(os.path.join(folder, "report.md"))["toxicity: label frequencies (share of rows with labels)"]
    assert {r["label"]: int(r["count"]) for r in frequencies} == expected
    for r in frequencies:
        assert float(r["share"]) == pytest.approx(expected[r["label"]] / labeled, abs=1e-4)
    matrix = {r["label"]: r for r in read_csv(os.path.join(folder, "toxicity_cooccurrence.csv"))}
    assert set(matrix) == set(TOXICITY)
    for a in TOXICITY:
        for b in TOXICITY:
            both = sql(directory, f"SELECT count(*) FROM labels WHERE list_contains(toxicity, '{a}') "
                                  f"AND list_contains(toxicity, '{b}')")[0][0]
            assert int(matrix[a][b]) == both, (a, b)


def test_the_most_confident_examples_are_the_top_k_by_score(partition):
    directory, folder, _ = partition
    by_label = {}
    for row in read_csv(os.path.join(folder, "most_confident.csv")):
        by_label.setdefault((row["classifier"], row["label"]), []).append(row)
    for stance in STANCES:
        top = sql(directory, f"SELECT id, stance_score FROM labels WHERE stance = '{stance}' "
                             f"ORDER BY stance_score DESC, id LIMIT {K}")
        got = by_label["stance", stance]
        assert [r["id"] for r in got] == [row_id for row_id, _ in top]
        assert [float(r["score"]) for r in got] == pytest.approx([score for _, score in top], abs=1e-6)
        assert [r["rank"] for r in got] == [str(i) for i in range(1, K + 1)]
    for label in TOXICITY:
        column = f"toxicity_{column_suffix(label)}"
        top = sql(directory, f"SELECT id, {column} FROM labels WHERE list_contains(toxicity, '{label}') "
                             f"ORDER BY {column} DESC, id LIMIT {K}")
        got = by_label["toxicity", label]
        assert [r["id"] for r in got] == [row_id for row_id, _ in top], label
        assert [float(r["score"]) for r in got] == pytest.approx([score for _, score in top], abs=1e-6)


def test_the_label_lines_show_the_generic_classifiers_with_the_reports_figures(partition):
    directory, _, _ = partition
    lines = console.label_lines(directory)
    assert [line.split(":")[0] for line in lines] == list(ALL)
    df, classifiers = report.read_labeled(directory)
    assert classifiers == list(ALL)
    polars_shares = report.label_shares(df, classifiers)
    reference = []
    for name in ALL:
        part = polars_shares.filter(polars_shares.get_column("classifier") == name)
        reference.append(console.label_line(name, list(zip(part["label"].to_list(), part["share"].to_list()))))
    assert lines == reference
    table, names, present = label_shares.read_label_columns(directory)
    arrow_shares = label_shares.label_shares(table, names, present)
    for name in ("stance", "toxicity"):
        part = polars_shares.filter(polars_shares.get_column("classifier") == name)
        assert [(label, count) for label, count, _ in arrow_shares[name]] == list(zip(part["label"], part["count"]))
        assert [s for _, _, s in arrow_shares[name]] == pytest.approx(part["share"].to_list(), abs=1e-12)
    stance = stance_counts(directory)
    labeled = non_null(directory, "stance")
    assert {label: (n, s) for label, n, s in arrow_shares["stance"]} == {
        label: (n, pytest.approx(n / labeled, abs=1e-12)) for label, n in stance.items()}
    assert {label: n for label, n, _ in arrow_shares["toxicity"]} == toxicity_counts(directory)


def test_the_label_lines_of_generic_classifiers_need_neither_polars_nor_matplotlib(partition, tmp_path):
    directory, _, _ = partition
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text("import sys\nsys.modules.update(dict.fromkeys(('polars', 'matplotlib')))\n")
    code = ("import json, sys; from pipelines import console; lines = console.label_lines(sys.argv[1]); "
            "assert 'models.classifiers.generic.report' in sys.modules; "
            "assert 'models.classifiers.reporting' not in sys.modules; print(json.dumps(lines))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shim), ROOT])}
    result = subprocess.run([sys.executable, "-c", code, directory], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.splitlines()[-1]) == console.label_lines(directory)


def test_without_the_metadata_only_the_four_are_recognized(tmp_path):
    directory = write_partition(tmp_path / "old", generic_table(40, seed=12), shards=1, metadata=False)
    folder = report.run([directory], out=io.StringIO())[directory]
    md = md_tables(os.path.join(folder, "report.md"))
    assert [r["classifier"] for r in md["Rows per classifier"]] == list(PUBLISHED_NAMES)
    assert "stance: rows per label" not in md and not os.path.exists(os.path.join(folder, "stance_labels.csv"))
    assert [line.split(":")[0] for line in console.label_lines(directory)] == list(PUBLISHED_NAMES)


def test_a_generic_classifier_giving_every_post_one_label_is_flagged(tmp_path):
    directory = write_partition(tmp_path / "stuck", generic_table(80, seed=13, names=("stance", "toxicity"),
                                                                  stance_only="against"))
    terminal = io.StringIO()
    report.run([directory], out=terminal)
    labeled = non_null(directory, "stance")
    assert labeled >= 20
    assert f"stance: against on 100.0% of {labeled} labeled rows: nearly every post got the same label" \
        in terminal.getvalue()
    flagged = [line for line in terminal.getvalue().splitlines() if "same label" in line]
    assert len(flagged) == 1


def test_the_trend_over_dates_has_the_generic_classifiers(tmp_path, monkeypatch):
    base = tmp_path / "out"
    dirs = {date: write_partition(base / f"date={date}", generic_table(60, seed=seed))
            for date, seed in (("2024-06-02", 14), ("2024-06-01", 15))}
    terminal = io.StringIO()
    trend_dir = report.run(list(dirs.values()), out=terminal)["trend"]
    trend = read_csv(os.path.join(trend_dir, "label_shares_over_dates.csv"))
    shares = {(r["date"], r["classifier"], r["label"]): float(r["share"]) for r in trend}
    for date, directory in dirs.items():
        labeled = non_null(directory, "stance")
        counts = stance_counts(directory)
        for stance in STANCES:
            assert shares[date, "stance", stance] == pytest.approx(counts.get(stance, 0) / labeled, abs=1e-9)
        labeled = non_null(directory, "toxicity")
        for label, n in toxicity_counts(directory).items():
            assert shares[date, "toxicity", label] == pytest.approx(n / labeled, abs=1e-9)
    md = md_tables(os.path.join(trend_dir, "label_shares_over_dates.md"))
    assert list(md)[-2:] == ["stance", "toxicity"]
    assert [r["date"] for r in md["toxicity"]] == ["2024-06-01", "2024-06-02"]
    assert "stance: share per date" in terminal.getvalue()

    drawn = []
    monkeypatch.setattr(report, "_figure_bytes", lambda fig: drawn.append(fig) or b"")
    import polars as pl

    report.trend_chart(pl.read_csv(os.path.join(trend_dir, "label_shares_over_dates.csv"),
                                   schema_overrides={"label": pl.String, "date": pl.String}))
    titles = [ax.get_title() for ax in drawn[0].axes]
    assert titles[-2:] == ["stance: label share per date", "toxicity: label share per date"]
    assert len(titles) == len(ALL)
