"""--dates: several date partitions labeled in one process with the real pipeline and tiny
checkpoints, against single-date runs of the same dates; model loads counted where transformers
reads weights from disk; a date without input, a suspect date, an interrupted run; the Python
API's result. The pure date parsing first."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest

from pipelines import dates as dates_module
from pipelines.dates import parse_dates
from pipelines.label_corpus import main, run
from pipelines.labeling import DONE, FAILED, SKIPPED, LabelConfig, LabelResult, SuspectRun, UsageError, label
from tests.test_commit import leftovers
from tests.test_pipeline import read_dead_letters, read_labels, write_jsonl
from transforms import partition

DAYS = ("2026-11-01", "2026-11-02", "2026-11-03")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------------------- the dates


def test_a_range_is_every_day_of_it_and_a_list_keeps_its_order():
    assert parse_dates("2026-02-27..2026-03-02") == ("2026-02-27", "2026-02-28", "2026-03-01", "2026-03-02")
    assert parse_dates("2024-02-28..2024-03-01") == ("2024-02-28", "2024-02-29", "2024-03-01")  # a leap day
    assert parse_dates("2026-11-01..2026-11-01") == ("2026-11-01",)
    assert parse_dates("2026-11-05, 2026-11-01") == ("2026-11-05", "2026-11-01")


@pytest.mark.parametrize("argv, message", [
    (["--dates", "2026-11-10..2026-11-01"], "the first date is after the last"),
    (["--dates", "2026-11-01..2026-13-01"], "'2026-13-01' in '2026-11-01..2026-13-01' is not a date YYYY-MM-DD"),
    (["--dates", "2026-11-01,2026-11-01"], "2026-11-01 given more than once"),
    (["--dates", ","], "no date given"),
    (["--dates", "2026-11-01..2026-11-02", "--date", "2026-11-01"], "--date 2026-11-01 and --dates together"),
    (["--dates", "2026-11-01..2026-11-02", "--output", "labels/"], "--dates needs {date} in --output"),
])
def test_bad_dates_are_one_line_and_exit_2_before_anything_loads(tmp_path, capsys, argv, message):
    base = {"--input": str(tmp_path / "{date}.jsonl"), "--output": str(tmp_path / "labels" / "{date}")}
    for flag, value in zip(argv[::2], argv[1::2]):
        base[flag] = value
    code = main([item for pair in base.items() for item in pair] + ["--only", "sentiment"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_the_worst_exit_status_of_the_dates_is_the_runs():
    def result(code):
        return LabelResult("out", DONE if code == 0 else FAILED, exit_code=code)

    assert dates_module.worst_exit([result(0), result(0)]) == 0
    assert dates_module.worst_exit([result(0), result(3), result(0)]) == 3
    assert dates_module.worst_exit([result(3), result(2), result(0)]) == 2  # not written is worse than suspect
    assert dates_module.worst_exit([result(2), result(1)]) == 1  # an unexpected error is the worst


# ------------------------------------------------------------------------------- the real pipeline


def posts_of(day: str, n: int) -> list[dict]:
    """Posts that differ from day to day (and one English, one Chinese, one empty)."""
    return ([{"id": f"{day}-{i}", "text": f"post {i} of {day}: the vote and the economy, take {i % 7}"}
             for i in range(n)]
            + [{"id": f"{day}-zh", "text": "今天的外卖很好吃"}, {"id": f"{day}-empty", "text": ""}])


@pytest.fixture()
def dataset(tmp_path):
    """Inputs posts/dt=DAY/posts.jsonl for the three days, with 20, 30 and 25 posts."""
    for day, n in zip(DAYS, (20, 30, 25)):
        folder = tmp_path / "posts" / f"dt={day}"
        folder.mkdir(parents=True)
        write_jsonl(folder / "posts.jsonl", posts_of(day, n))
    return tmp_path


def argv(root, out, checkpoints, names, *extra):
    args = ["--input", str(root / "posts" / "dt={date}" / "*.jsonl"), "--output", str(root / out / "dt={date}"),
            "--only", ",".join(names), "--device", "cpu", *extra]
    for name in names:
        args += ["--model", f"{name}={checkpoints[name]}"]
    return args


@pytest.fixture()
def weight_loads(monkeypatch):
    """Every model read from disk (transformers' from_pretrained, which validation and the workers
    call), by checkpoint directory: the real loads, counted on their way through."""
    from transformers import AutoModelForSequenceClassification

    loads: list[str] = []
    original = AutoModelForSequenceClassification.from_pretrained.__func__

    def counted(cls, path, *args, **kwargs):
        loads.append(os.path.basename(str(path)))
        return original(cls, path, *args, **kwargs)

    monkeypatch.setattr(AutoModelForSequenceClassification, "from_pretrained", classmethod(counted))
    return loads


def comparable(directory) -> tuple:
    """A partition's rows by id (floats rounded: batches may pad differently), dead letters and counts."""
    rows = {}
    for row in read_labels(directory).to_pylist():
        rows[row["id"]] = {key: round(value, 5) if isinstance(value, float) and not math.isnan(value) else value
                           for key, value in row.items()}
    manifest = partition.read_manifest(str(directory))
    counts = {key: manifest[key] for key in ("records_read", "rows_written", "dead_lettered", "languages",
                                             "by_classifier", "inferences", "tokens", "checkpoints", "routing")}
    return rows, sorted(json.dumps(letter, sort_keys=True) for letter in read_dead_letters(directory)), counts


def test_three_dates_in_one_run_equal_three_single_date_runs_with_each_model_loaded_once(
        dataset, tiny_checkpoints, weight_loads):
    names = ("sentiment", "emotion")
    for day in DAYS:
        assert run(argv(dataset, "single", tiny_checkpoints, names, "--date", day)).status == DONE
    assert sorted(weight_loads) == sorted(names * len(DAYS))  # each run of one date loads every model
    weight_loads.clear()

    results = run(argv(dataset, "multi", tiny_checkpoints, names, "--dates", f"{DAYS[0]}..{DAYS[-1]}"))
    assert sorted(weight_loads) == sorted(names)  # once for the three dates
    assert [(r.date, r.status, r.exit_code) for r in results] == [(day, DONE, 0) for day in DAYS]
    for day, result in zip(DAYS, results):
        single, multi = dataset / "single" / f"dt={day}", dataset / "multi" / f"dt={day}"
        assert comparable(multi) == comparable(single)
        manifest = partition.read_manifest(str(multi))  # committed on its own, as a run of that date
        assert manifest["date"] == day and manifest["output"] == str(multi) and os.path.exists(multi / "_SUCCESS")
        assert result.output == str(multi) and result.rows == manifest["rows_written"] == len(read_labels(multi))
        assert result.ran == ("sentiment", "emotion") and result.carried == ()
        assert leftovers(multi) == []
    assert len({partition.read_manifest(str(dataset / "multi" / f"dt={day}"))["run_id"] for day in DAYS}) == 3

    # Everything done: --skip-if-done skips each date and loads no model at all.
    weight_loads.clear()
    again = run(argv(dataset, "multi", tiny_checkpoints, names, "--dates", ",".join(DAYS), "--skip-if-done"))
    assert [r.status for r in again] == [SKIPPED] * 3 and weight_loads == []

    # A classifier added: backfilled onto every date with only its model run; one date already has it.
    names = ("sentiment", "emotion", "politics")
    assert run(argv(dataset, "multi", tiny_checkpoints, names, "--date", DAYS[1], "--skip-if-done")).status == DONE
    weight_loads.clear()
    backfill = run(argv(dataset, "multi", tiny_checkpoints, names, "--dates", ",".join(DAYS), "--skip-if-done"))
    assert sorted(weight_loads) == sorted(names)  # once, though two dates need them and one is skipped
    assert [r.status for r in backfill] == [DONE, SKIPPED, DONE]
    for result in (backfill[0], backfill[2]):
        assert result.ran == ("politics",) and result.carried == ("sentiment", "emotion")
        assert result.classifiers["sentiment"]["inferences"] == result.classifiers["emotion"]["inferences"] == 0
        assert result.classifiers["politics"]["inferences"] == result.classifiers["politics"]["labeled"] > 0
        rows = read_labels(result.output).to_pylist()
        assert all(row["politics_economy"] is not None for row in rows if row["lang"] == "en" and row["clean_text"])


def test_a_date_that_fails_is_reported_the_others_commit_and_the_exit_is_the_worst(
        dataset, tiny_checkpoints, capsys):
    (dataset / "posts" / f"dt={DAYS[1]}" / "posts.jsonl").unlink()  # no input
    broken = dataset / "posts" / "dt=2026-11-04"
    broken.mkdir()
    write_jsonl(broken / "posts.jsonl", ["{not json"] * 3)  # written, every record dead-lettered: exit 3
    code = main(argv(dataset, "labels", tiny_checkpoints, ("sentiment",), "--dates", f"{DAYS[0]}..2026-11-04"))
    err = capsys.readouterr().err
    assert code == 2  # the worst: a date not written (2) over a suspect one (3)
    done = [day for day in (*DAYS, "2026-11-04") if os.path.exists(dataset / "labels" / f"dt={day}" / "_SUCCESS")]
    assert done == [DAYS[0], DAYS[2]]
    assert not os.path.exists(dataset / "labels" / f"dt={DAYS[1]}")
    suspect = partition.read_manifest(str(dataset / "labels" / "dt=2026-11-04"), suspect=True)
    assert suspect["problem"].startswith("no record could be used")
    lines = [line.split(" ", 1)[1] for line in err.splitlines()]
    failed = f"date {DAYS[1]} (2/4): failed (exit 2): --input '{dataset}/posts/dt={DAYS[1]}/*.jsonl' matches no files"
    assert any(line.startswith(failed) for line in lines), err
    table = lines[lines.index("dates: 4, 2 complete, 2 failed; exit status 2") + 1:]
    assert [row.split()[0] for row in table] == ["date", *DAYS, "2026-11-04"]
    assert table[2].split() == [DAYS[1], "-", "-", "-", "no", "failed", "(exit", "2)"]
    assert table[4].endswith("suspect (exit 3)")
    assert table[1].split()[:3] == [DAYS[0], "22", "sentiment"] and table[1].endswith("done")


def test_a_stop_between_dates_commits_nothing_more_and_names_the_dates_done(dataset, tiny_checkpoints):
    write_jsonl(dataset / "posts" / f"dt={DAYS[1]}" / "posts.jsonl", posts_of(DAYS[1], 3000))  # a longer date
    env = {**os.environ, "PYTHONPATH": ROOT}
    job = subprocess.Popen([sys.executable, "-m", "pipelines.label_corpus",
                            *argv(dataset, "labels", tiny_checkpoints, ("sentiment",), "--dates", ",".join(DAYS))],
                           stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    seen = []
    for line in job.stderr:
        seen.append(line)
        if f"date {DAYS[0]} (1/3): done" in line:  # the first date committed; the second begins
            time.sleep(1)
            job.send_signal(signal.SIGTERM)
            break
    after = job.stderr.read()
    assert job.wait(timeout=120) == 143, "".join(seen) + after
    assert "Traceback" not in after, after
    last = after.strip().splitlines()[-1]
    assert last.startswith("label_corpus: stopped by SIGTERM: "), after
    complete = [day for day in DAYS if os.path.exists(dataset / "labels" / f"dt={day}" / "_SUCCESS")]
    assert complete[0] == DAYS[0] and DAYS[2] not in complete  # the third never started
    assert last.endswith(f"; dates done: {', '.join(complete)}; not done: "
                         f"{', '.join(day for day in DAYS if day not in complete)}"), last
    assert not os.path.exists(dataset / "labels" / f"dt={DAYS[2]}")
    for day in complete:
        assert leftovers(dataset / "labels" / f"dt={day}") == []
    if DAYS[1] not in complete:  # stopped before its commit: nothing of it, not even its staging
        assert not os.path.exists(dataset / "labels" / f"dt={DAYS[1]}") or \
               leftovers(dataset / "labels" / f"dt={DAYS[1]}") == []


# ------------------------------------------------------------------------------- the Python API


def test_label_returns_the_partitions_counts_and_its_errors_name_config_fields(dataset, tiny_checkpoints):
    from models.classifier import InferenceOptions
    from transforms.records import FieldMap

    config = LabelConfig(input=str(dataset / "posts" / "dt={date}" / "*.jsonl"), output=str(dataset / "py" / "{date}"),
                         checkpoints={"sentiment": tiny_checkpoints["sentiment"]}, routes={"sentiment": None},
                         inference=InferenceOptions(device="cpu"), dates=f"{DAYS[0]}..{DAYS[1]}", progress=False)
    results = label(config)
    assert [(r.date, r.status) for r in results] == [(day, DONE) for day in DAYS[:2]]
    for result in results:
        table = read_labels(result.output)  # what pyarrow reads back
        labeled = sum(1 for value in table.column("sentiment").to_pylist() if value is not None)
        assert result.rows == table.num_rows and result.dead_letters == 0
        assert result.classifiers == {"sentiment": {"labeled": labeled, "skipped_language": 0,
                                                    "inferences": labeled, "carried": 0}}
    with pytest.raises(UsageError) as missing:  # found at launch, from the file's first record
        label(LabelConfig(input=config.input.replace("{date}", DAYS[0]), output=str(dataset / "py-missing"),
                          checkpoints=config.checkpoints, routes=config.routes, inference=config.inference,
                          fields=FieldMap(text_field="body"), progress=False))
    assert "fields.text_field" in str(missing.value) and "--" not in str(missing.value)
    numbers = dataset / "numbers.jsonl"  # the field is there, but no text in it: found only by reading
    numbers.write_text("".join(json.dumps({"id": f"n{i}", "text": i}) + "\n" for i in range(5)))
    with pytest.raises(SuspectRun) as suspect:
        label(LabelConfig(input=str(numbers), output=str(dataset / "py-suspect"),
                          checkpoints=config.checkpoints, routes=config.routes, inference=config.inference,
                          progress=False))
    assert "check fields.text_field" in str(suspect.value) and "--" not in str(suspect.value)


PYTHON_API = """
import sys
from pipelines.labeling import LabelConfig, label
from transformers import AutoModelForSequenceClassification
config = LabelConfig(input=sys.argv[1], output=sys.argv[2], checkpoints={"sentiment": sys.argv[3]},
                     routes={"sentiment": None})
label(config)
print("=== progress=True", file=sys.stderr, flush=True)
result = label(LabelConfig(**{**config.__dict__, "output": sys.argv[2] + "-shown", "progress": True}))
print("=== transformers after label()", file=sys.stderr, flush=True)
AutoModelForSequenceClassification.from_pretrained(sys.argv[3])
print(result.status, result.rows)
"""


def test_label_in_python_shows_progress_only_when_asked_and_never_transformers_bars(dataset, tiny_checkpoints):
    posts = str(dataset / "posts" / f"dt={DAYS[0]}" / "posts.jsonl")
    done = subprocess.run([sys.executable, "-c", PYTHON_API, posts, str(dataset / "api"),
                           tiny_checkpoints["sentiment"]], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": ROOT}, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == [DONE, "22"]
    quiet, rest = done.stderr.split("=== progress=True\n")
    shown, after = rest.split("=== transformers after label()\n")
    assert quiet.strip() == ""  # stderr is not a terminal: no progress by default, and no bars
    assert "done: 22 posts read, 22 rows written" in shown and "Loading weights" not in shown
    assert "Loading weights" in after  # transformers' own settings are back once label() returns
