"""pipelines.report on small labeled partitions written here with pyarrow in the output schema
(columns from models.heads, labels from random logits): the files exist, and every figure in
its Markdown and CSV tables equals a count computed independently with pyarrow."""
from __future__ import annotations

import csv
import io
import json
import os
import re
from collections import Counter
from itertools import combinations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from models.classifiers import PUBLISHED as SPECS, PUBLISHED_NAMES as CLASSIFIER_NAMES
from models.classifiers.politics import CLASSES as POLITICS_CLASSES, TOPICS as POLITICS_TOPICS
from pipelines import report

# "Very Happy" checks that a label whose column suffix differs from it (emotion_very_happy) is handled.
EMOTIONS = ["anger", "joy", "sadness", "optimism", "Very Happy", "fear"]
CONFIGS = {
    "politics": {"id2label": {i: f"l{i}" for i in range(48)}, "topics": list(POLITICS_TOPICS)},
    "stars": {"id2label": {i: f"Star_{i + 1}" for i in range(5)}},
    "sentiment": {"id2label": {0: "negative", 1: "positive"}},
    "emotion": {"id2label": dict(enumerate(EMOTIONS))},
}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def labeled_table(n: int, seed: int, classifiers=CLASSIFIER_NAMES, empty_share: float = 0.1) -> pa.Table:
    """n rows in the pipeline's output schema; about empty_share of them without text (null labels)."""
    rng = np.random.default_rng(seed)
    heads = {name: SPECS[name].head_for(CONFIGS[name]) for name in classifiers}
    fields = [pa.field("id", pa.string()), pa.field("text", pa.string()), pa.field("source", pa.string()),
              pa.field("clean_text", pa.string())]
    for head in heads.values():
        fields += head.fields
    rows = []
    for i in range(n):
        text = "" if rng.random() < empty_share else f"post {i} " + "word " * int(rng.integers(1, 9))
        row = {"id": f"r{seed}-{i:04d}", "text": text, "source": "test", "clean_text": text.strip()}
        for name, head in heads.items():
            if text:
                logits = rng.normal(0, 2.5, size=(1, len(CONFIGS[name]["id2label"]))).astype(np.float32)
                row.update(head.to_columns(logits)[0])
            else:
                row.update(head.null_columns())
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=pa.schema(fields))


def write_partition(directory, table: pa.Table, shards: int = 2) -> str:
    os.makedirs(directory, exist_ok=True)
    step = -(-table.num_rows // shards)
    for s in range(shards):
        pq.write_table(table.slice(s * step, step), os.path.join(directory, f"labels-{s:05d}-of-{shards:05d}.parquet"))
    return str(directory)


def md_tables(path: str) -> dict[str, list[dict]]:
    """Section title -> its Markdown table as a list of {column: cell text}."""
    tables, title, lines = {}, None, open(path, encoding="utf-8").read().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("## "):
            title = line[3:]
        elif line.startswith("| ") and title and title not in tables:
            header = [c.strip() for c in line.strip("|").split(" | ")]
            body = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                body.append(dict(zip(header, [c.strip() for c in re.split(r"(?<!\\)\|", row.strip()[1:-1])])))
            tables[title] = body
    return tables


def read_csv(path: str) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def count_equal(table: pa.Table, column: str, value) -> int:
    return pc.sum(pc.equal(table.column(column), value)).as_py() or 0


def non_null(table: pa.Table, column: str) -> int:
    return table.num_rows - table.column(column).null_count


@pytest.fixture(scope="module")
def one_partition(tmp_path_factory):
    table = labeled_table(80, seed=1)
    directory = write_partition(tmp_path_factory.mktemp("out") / "date=2024-05-01", table)
    terminal = io.StringIO()
    folders = report.run([directory, "--examples", "2"], out=terminal)
    return table, folders[directory], terminal.getvalue()


def test_files_exist(one_partition):
    _, folder, _ = one_partition
    for stem in ("summary", "politics_topics", "stars", "sentiment", "emotions", "emotion_cooccurrence"):
        assert os.path.getsize(os.path.join(folder, f"{stem}.csv")) > 0
        with open(os.path.join(folder, f"{stem}.png"), "rb") as handle:
            assert handle.read(8) == PNG_MAGIC, stem
    assert os.path.exists(os.path.join(folder, "most_confident.csv"))
    md = open(os.path.join(folder, "report.md"), encoding="utf-8").read()
    assert "![Stars histogram](stars.png)" in md


def test_summary_counts(one_partition):
    table, folder, terminal = one_partition
    md = md_tables(os.path.join(folder, "report.md"))["Rows per classifier"]
    assert [r["classifier"] for r in md] == list(CLASSIFIER_NAMES)
    empty = count_equal(table, "text", "")
    assert empty > 0  # the fixture has rows without text
    for row, csv_row in zip(md, read_csv(os.path.join(folder, "summary.csv"))):
        column = report.label_column(row["classifier"])
        nulls = table.column(column).null_count
        assert nulls == empty
        assert int(row["rows"]) == int(csv_row["rows"]) == table.num_rows
        assert int(row["null_rows"]) == int(csv_row["null_rows"]) == nulls
        assert int(row["labeled_rows"]) == table.num_rows - nulls
        assert float(row["null_share"]) == pytest.approx(nulls / table.num_rows, abs=1e-4)
    assert f"| politics | {table.num_rows} |" in terminal  # the text table on the terminal


def test_stars_and_sentiment_counts(one_partition):
    table, folder, _ = one_partition
    md = md_tables(os.path.join(folder, "report.md"))
    stars = {r["stars"]: r for r in md["Stars histogram"]}
    assert sorted(stars) == ["1", "2", "3", "4", "5"]
    for star, row in stars.items():
        expected = count_equal(table, "stars", int(star))
        assert int(row["count"]) == expected
        assert float(row["share"]) == pytest.approx(expected / non_null(table, "stars"), abs=1e-4)
    assert sum(int(r["count"]) for r in stars.values()) == non_null(table, "stars")
    sentiment = {r["sentiment"]: int(r["count"]) for r in md["Sentiment share"]}
    assert sentiment == {label: count_equal(table, "sentiment", label) for label in ("negative", "positive")}
    from_csv = {r["sentiment"]: int(r["count"]) for r in read_csv(os.path.join(folder, "sentiment.csv"))}
    assert from_csv == sentiment


def test_politics_counts_per_topic(one_partition):
    table, folder, _ = one_partition
    md = {r["topic"]: r for r in md_tables(os.path.join(folder, "report.md"))["Politics: rows per topic and class"]}
    assert list(md) == list(POLITICS_TOPICS)
    long = {(r["topic"], r["class"]): r for r in read_csv(os.path.join(folder, "politics_topics.csv"))}
    for topic in POLITICS_TOPICS:
        labeled = non_null(table, f"politics_{topic}")
        for cls in POLITICS_CLASSES:
            expected = count_equal(table, f"politics_{topic}", cls)
            assert int(md[topic][cls]) == expected, (topic, cls)
            assert int(long[topic, cls]["count"]) == expected
            assert float(long[topic, cls]["share"]) == pytest.approx(expected / labeled, abs=1e-9)
    spread = {cls for topic in POLITICS_TOPICS for cls in POLITICS_CLASSES if int(md[topic][cls]) > 0}
    assert len(spread) > 1  # the random logits gave more than one class


def test_emotion_frequencies_and_cooccurrence(one_partition):
    table, folder, _ = one_partition
    md = md_tables(os.path.join(folder, "report.md"))
    label_lists = [labels for labels in table.column("emotions").to_pylist() if labels is not None]
    flat = pc.value_counts(pc.list_flatten(table.column("emotions"))).to_pylist()
    expected = {item["values"]: item["counts"] for item in flat}
    expected.update({label: 0 for label in EMOTIONS if label not in expected})
    freq = {r["emotion"]: r for r in md["Emotion frequencies (share of rows with emotions)"]}
    assert {label: int(r["count"]) for label, r in freq.items()} == expected
    for label, row in freq.items():
        assert float(row["share"]) == pytest.approx(expected[label] / len(label_lists), abs=1e-4)
    counts = [int(r["count"]) for r in freq.values()]
    assert counts == sorted(counts, reverse=True)

    pairs = Counter()
    for labels in label_lists:
        for a, b in combinations(sorted(set(labels)), 2):
            pairs[a, b] += 1
    matrix = {r["emotion"]: r for r in read_csv(os.path.join(folder, "emotion_cooccurrence.csv"))}
    assert set(matrix) == set(EMOTIONS)
    for a in EMOTIONS:
        assert int(matrix[a][a]) == expected[a]
        for b in EMOTIONS:
            if a != b:
                assert int(matrix[a][b]) == pairs[tuple(sorted((a, b)))], (a, b)
    assert md["Emotion co-occurrence (rows carrying both)"][0]["emotion"] == next(iter(freq))


def test_most_confident_examples(one_partition):
    table, folder, _ = one_partition
    rows = read_csv(os.path.join(folder, "most_confident.csv"))
    by_label = {}
    for row in rows:
        by_label.setdefault((row["classifier"], row["label"]), []).append(row)
    positive = table.filter(pc.equal(table.column("sentiment"), "positive"))
    top = positive.take(pc.sort_indices(positive, [("sentiment_score", "descending")])[:2])
    assert [r["id"] for r in by_label["sentiment", "positive"]] == top.column("id").to_pylist()
    assert [r["rank"] for r in by_label["sentiment", "positive"]] == ["1", "2"]
    happy = table.filter(pa.array(["Very Happy" in (x or []) for x in table.column("emotions").to_pylist()]))
    best = happy.take(pc.sort_indices(happy, [("emotion_very_happy", "descending")])[:2])
    assert [r["id"] for r in by_label["emotion", "Very Happy"]] == best.column("id").to_pylist()
    assert float(by_label["emotion", "Very Happy"][0]["score"]) == pytest.approx(
        best.column("emotion_very_happy")[0].as_py(), abs=1e-6)
    assert ("politics", "economy=unknown") not in by_label  # unknown: the topic is absent
    assert all(len(v) <= 2 for v in by_label.values())


def test_classifier_left_out_leaves_its_sections_out(tmp_path):
    table = labeled_table(30, seed=5, classifiers=("sentiment",))
    directory = write_partition(tmp_path / "only_sentiment", table, shards=1)
    folder = report.run([directory], out=io.StringIO())[directory]
    md = md_tables(os.path.join(folder, "report.md"))
    assert [r["classifier"] for r in md["Rows per classifier"]] == ["sentiment"]
    assert "Stars histogram" not in md and not os.path.exists(os.path.join(folder, "stars.png"))
    assert os.path.exists(os.path.join(folder, "sentiment.png"))


def test_shares_over_dates(tmp_path):
    base = tmp_path / "out"
    tables = {"2024-05-02": labeled_table(40, seed=3), "2024-05-01": labeled_table(50, seed=2, empty_share=0.3)}
    dirs = [write_partition(base / f"date={date}", t) for date, t in tables.items()]
    terminal = io.StringIO()
    folders = report.run(dirs, out=terminal)
    trend_dir = folders["trend"]
    assert trend_dir == os.path.join(dirs[0], "_report")  # the latest partition's report
    with open(os.path.join(trend_dir, "label_shares_over_dates.png"), "rb") as handle:
        assert handle.read(8) == PNG_MAGIC
    assert os.path.exists(os.path.join(dirs[1], "_report", "report.md"))  # each partition is reported on too
    trend = read_csv(os.path.join(trend_dir, "label_shares_over_dates.csv"))
    shares = {(r["date"], r["classifier"], r["label"]): float(r["share"]) for r in trend}
    assert [r["date"] for r in trend if r["classifier"] == "sentiment" and r["label"] == "positive"] == \
        ["2024-05-01", "2024-05-02"]
    for date, table in tables.items():
        for label in ("negative", "positive"):
            assert shares[date, "sentiment", label] == pytest.approx(
                count_equal(table, "sentiment", label) / non_null(table, "sentiment"), abs=1e-9)
        for star in range(1, 6):
            assert shares[date, "stars", str(star)] == pytest.approx(
                count_equal(table, "stars", star) / non_null(table, "stars"), abs=1e-9)
        cells = sum(non_null(table, f"politics_{t}") for t in POLITICS_TOPICS)
        for cls in POLITICS_CLASSES:
            pooled = sum(count_equal(table, f"politics_{t}", cls) for t in POLITICS_TOPICS)
            assert shares[date, "politics", cls] == pytest.approx(pooled / cells, abs=1e-9)
        emotions = [labels for labels in table.column("emotions").to_pylist() if labels is not None]
        for label in EMOTIONS:
            assert shares[date, "emotion", label] == pytest.approx(
                sum(label in labels for labels in emotions) / len(emotions), abs=1e-9)
    md = md_tables(os.path.join(trend_dir, "label_shares_over_dates.md"))
    assert [r["date"] for r in md["sentiment"]] == ["2024-05-01", "2024-05-02"]
    assert float(md["sentiment"][0]["positive"]) == pytest.approx(shares["2024-05-01", "sentiment", "positive"],
                                                                  abs=1e-4)
    assert "sentiment: share per date" in terminal.getvalue()


def test_header_says_whether_the_partition_is_complete(tmp_path):
    table = labeled_table(12, seed=9, classifiers=("stars",))
    done = write_partition(tmp_path / "done", table, shards=1)
    manifest = {"records_read": 13, "rows_written": 12, "dead_lettered": 1,
                "checkpoints": {"stars": {"checkpoint": "gs://b/stars", "revision": "sha256:abc"}}}
    (tmp_path / "done" / "_manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "done" / "_SUCCESS").write_text("")
    half = write_partition(tmp_path / "half", table, shards=1)
    terminal = io.StringIO()
    folders = report.run([done, half], out=terminal)
    done_md = open(os.path.join(folders[done], "report.md"), encoding="utf-8").read()
    half_md = open(os.path.join(folders[half], "report.md"), encoding="utf-8").read()
    assert "Partition complete (_SUCCESS): yes" in done_md
    assert "Records read: 13; rows written: 12; dead-lettered: 1" in done_md
    assert "- stars: gs://b/stars (sha256:abc)" in done_md
    assert "Partition complete (_SUCCESS): **no**" in half_md
    assert terminal.getvalue().count("warning: no _SUCCESS") == 1


def test_missing_partition_is_a_clear_error(tmp_path, capsys):
    assert report.main([str(tmp_path)]) == 2
    assert "no labels-*.parquet" in capsys.readouterr().err


def test_random_labels_raise_no_same_label_warning(one_partition):
    table, folder, terminal = one_partition
    assert "same label" not in terminal
    assert "same label" not in open(os.path.join(folder, "report.md"), encoding="utf-8").read()


def test_a_classifier_that_gives_every_post_one_label_is_flagged(tmp_path):
    table = labeled_table(60, seed=3, classifiers=("stars", "sentiment"))
    stuck = pa.array([None if s is None else 4 for s in table.column("stars").to_pylist()], pa.int8())
    table = table.set_column(table.schema.get_field_index("stars"), "stars", stuck)
    terminal = io.StringIO()
    folder = report.run([write_partition(tmp_path / "out", table)], out=terminal)[str(tmp_path / "out")]
    labeled = non_null(table, "stars")
    expected = f"stars: 4 on 100.0% of {labeled} labeled rows: nearly every post got the same label"
    assert expected in terminal.getvalue()
    assert expected in open(os.path.join(folder, "report.md"), encoding="utf-8").read()
    assert "sentiment:" not in "".join(line for line in terminal.getvalue().splitlines() if "same label" in line)


def test_language_shares_count_the_lang_column():
    import polars as pl

    df = pl.DataFrame({"lang": ["en", "en", "zh", "und"]})
    shares = report.language_shares(df)
    assert shares.rows() == [("en", 2, 0.5), ("und", 1, 0.25), ("zh", 1, 0.25)]


def _figures(monkeypatch) -> list:
    """The matplotlib figures the report draws, kept instead of written as PNG."""
    drawn = []
    monkeypatch.setattr(report, "_figure_bytes", lambda fig: drawn.append(fig) or b"")
    return drawn


def test_the_trend_chart_keeps_14_emotion_lines_apart_and_off_the_frame(monkeypatch):
    import polars as pl
    from models.tiny_checkpoints import EMOTION_LABELS

    dates = ["2024-05-01", "2024-05-02", "2024-05-03"]
    trend = pl.DataFrame({"date": dates * len(EMOTION_LABELS), "classifier": "emotion",
                          "label": [label for label in EMOTION_LABELS for _ in dates],
                          "count": 1, "share": [0.0, 1.0, 0.5] * len(EMOTION_LABELS)})
    drawn = _figures(monkeypatch)
    report.trend_chart(trend)
    (ax,) = drawn[0].axes
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == EMOTION_LABELS
    assert len({(line.get_color(), line.get_linestyle()) for line in lines}) == len(EMOTION_LABELS)
    low, high = ax.get_ylim()
    assert low < 0 and high > 1  # lines at 0 and 1 are drawn inside the frame


def test_the_languages_chart_labels_every_bar_and_its_title_says_what_it_shows(monkeypatch):
    import polars as pl

    drawn = _figures(monkeypatch)
    few = pl.DataFrame({"lang": ["en"] * 996 + ["zh"] * 3 + ["ms"]})
    report.chart(report.Section("languages", "Languages (the lang column)", report.language_shares(few)), few)
    ax = drawn[-1].axes[0]
    assert [t.get_text() for t in ax.texts] == ["99.6%", "0.3%", "0.1%"]
    assert "most common" not in ax.get_title() + ax.get_xlabel()
    many = pl.DataFrame({"lang": [f"l{i:02d}" for i in range(15) for _ in range(i + 1)]})
    report.chart(report.Section("languages", "Languages (the lang column)", report.language_shares(many)), many)
    ax = drawn[-1].axes[0]
    assert len(ax.patches) == len(ax.texts) == 12 and "the 12 most common of 15" in ax.get_title()


def test_the_politics_warning_counts_the_topics_stuck_on_unknown_too(tmp_path):
    table = labeled_table(40, seed=4, classifiers=("politics",))
    for i, topic in enumerate(POLITICS_TOPICS):  # 8 topics always neutral, 4 always unknown
        column = f"politics_{topic}"
        value = "neutral" if i < 8 else "unknown"
        stuck = pa.array([None if v is None else value for v in table.column(column).to_pylist()], pa.string())
        table = table.set_column(table.schema.get_field_index(column), column, stuck)
    terminal = io.StringIO()
    report.run([write_partition(tmp_path / "all", table)], out=terminal)
    assert "politics: 12 of 12 topics gave one class to >= 98% of rows (8 a negative/neutral/positive one, " \
           "e.g. democracy: neutral; 4 unknown" in terminal.getvalue()
    random_table = labeled_table(40, seed=5, classifiers=("politics",))
    for topic in POLITICS_TOPICS[:4]:  # only unknown, on 4 topics: what a corpus about other things gives
        column = f"politics_{topic}"
        stuck = pa.array([None if v is None else "unknown" for v in random_table.column(column).to_pylist()])
        random_table = random_table.set_column(random_table.schema.get_field_index(column), column, stuck)
    terminal = io.StringIO()
    report.run([write_partition(tmp_path / "some", random_table)], out=terminal)
    assert "politics:" not in "".join(line for line in terminal.getvalue().splitlines() if "same label" in line)


def test_a_suspect_partition_is_reported_as_not_complete_with_its_problem(tmp_path):
    table = labeled_table(12, seed=9, classifiers=("stars",))
    directory = write_partition(tmp_path / "suspect", table, shards=1)
    manifest = {"run_id": "r", "records_read": 40, "rows_written": 12, "dead_lettered": 28,
                "problem": "28 of 40 records read (70%) were dead-lettered"}
    (tmp_path / "suspect" / "_manifest.json").write_text(json.dumps(manifest))
    terminal = io.StringIO()
    folder = report.run([directory], out=terminal)[directory]
    md = open(os.path.join(folder, "report.md"), encoding="utf-8").read()
    assert "Partition complete (_SUCCESS): **no**: the run was written but does not look like success" in md
    assert "28 of 40 records read (70%)" in md and "Records read: 40" in md
    assert "warning: no _SUCCESS: the run does not look like success: 28 of 40" in terminal.getvalue()


def test_the_trend_is_blank_where_a_classifier_did_not_run_and_0_where_it_ran_and_labeled_no_post(tmp_path,
                                                                                                   monkeypatch):
    """stars runs on 05-01; on 05-02 it runs but routing keeps every post from it (its columns are
    there, all null); on 05-03 it does not run (no stars columns). emotion runs on 05-02 alone."""
    ran = {"2024-05-01": ("stars", "sentiment"), "2024-05-02": ("stars", "sentiment", "emotion"),
           "2024-05-03": ("sentiment",)}
    tables = {date: labeled_table(30, seed=i, classifiers=names) for i, (date, names) in enumerate(ran.items())}
    routed_away = tables["2024-05-02"]
    for column in ("stars", "stars_score"):
        field = routed_away.schema.field(column)
        routed_away = routed_away.set_column(routed_away.schema.get_field_index(column), field,
                                             pa.nulls(routed_away.num_rows, field.type))
    tables["2024-05-02"] = routed_away
    dirs = [write_partition(tmp_path / f"dt={date}", table, shards=1) for date, table in tables.items()]
    drawn = []

    def keep_closed(fig):  # a closed figure keeps its lines' data
        import matplotlib.pyplot as plt

        drawn.append(fig)
        plt.close(fig)
        return b""

    monkeypatch.setattr(report, "_figure_bytes", keep_closed)
    trend_dir = report.run(dirs, out=io.StringIO())["trend"]

    cells = {(r["date"], r["classifier"], r["label"]): (r["count"], r["share"])
             for r in read_csv(os.path.join(trend_dir, "label_shares_over_dates.csv"))}
    for star in "12345":
        assert cells["2024-05-01", "stars", star] == (
            str(count_equal(tables["2024-05-01"], "stars", int(star))),
            str(count_equal(tables["2024-05-01"], "stars", int(star)) / non_null(tables["2024-05-01"], "stars")))
        assert cells["2024-05-02", "stars", star] == ("0", "0.0")  # ran, no post in its languages
        assert cells["2024-05-03", "stars", star] == ("", "")  # did not run
    emotion_labels = {label for (_, name, label) in cells if name == "emotion"}
    assert len(emotion_labels) == len(EMOTIONS)
    for label in emotion_labels:
        assert cells["2024-05-01", "emotion", label] == cells["2024-05-03", "emotion", label] == ("", "")
        assert cells["2024-05-02", "emotion", label][0] != ""
    assert all(cell[1] != "" for (_, name, _), cell in cells.items() if name == "sentiment")

    md = md_tables(os.path.join(trend_dir, "label_shares_over_dates.md"))
    stars = {row["date"]: row for row in md["stars"]}
    assert [stars["2024-05-02"][s] for s in "12345"] == ["0.0000"] * 5
    assert [stars["2024-05-03"][s] for s in "12345"] == [""] * 5
    assert {row["date"]: row["joy"] for row in md["emotion"]}["2024-05-01"] == ""

    # the chart: NaN where the classifier did not run, so matplotlib breaks the line (no line to 0),
    # and a marker on every line, so emotion's one point between two gaps shows
    from models.classifiers import classifier_for

    axes = {ax.get_title(): ax for ax in drawn[-1].axes}
    for name, missing in (("stars", [False, False, True]), ("emotion", [True, False, True]),
                          ("sentiment", [False, False, False])):
        lines = axes[classifier_for(name).report.trend_title(name)].get_lines()
        assert lines
        for line in lines:
            shares = np.asarray(line.get_ydata(), dtype=float)
            assert np.isnan(shares).tolist() == missing, (name, line.get_label())
            assert line.get_marker() not in (None, "", " ", "None")
            if name == "stars":
                assert shares[1] == 0.0
