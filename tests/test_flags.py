"""The command line is checked before anything is read or loaded (pipelines/flags.py): numbers in
range, arguments that are neither ours nor Beam's (against what Beam itself discards), --date
without {date}, an --output that is a file or among the inputs; and through label_corpus.main,
one case per kind of error: exit 2, one line naming the flag, nothing written, no model loaded."""
from __future__ import annotations

import argparse
import logging
import os
import re
import sys

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines import flags, label_corpus, labeling
from pipelines.labeling import UsageError

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "deploy"))
import dataflow_flags  # noqa: E402

BASE = ["--input", "in/*.jsonl", "--output", "out"]


def test_range_types_take_what_they_say_and_name_it_otherwise():
    positive, share, price = flags.integer(1), flags.decimal(0, 1), flags.decimal(0)
    assert (positive("1"), positive("64"), share("0"), share("0.5"), share("1"), price("1.27")) == (1, 64, 0, .5, 1, 1.27)
    for parse, value, allowed in ((positive, "0", ">= 1"), (positive, "-1", ">= 1"), (positive, "1.5", ">= 1"),
                                  (positive, "x", ">= 1"), (flags.integer(0), "-1", ">= 0"), (share, "1.01", "0 to 1"),
                                  (share, "nan", "0 to 1"), (price, "inf", ">= 0"), (price, "-0.1", ">= 0")):
        with pytest.raises(argparse.ArgumentTypeError, match=allowed):
            parse(value)


def numeric_options():
    """Every option of ours that takes a number: its flag and its type."""
    return [(action.option_strings[0], action.type) for action in label_corpus.build_parser()._actions
            if getattr(action.type, "__name__", "").startswith(("an integer", "a number"))]


def test_every_numeric_option_is_range_checked_and_the_error_names_it():
    untyped = [action.option_strings for action in label_corpus.build_parser()._actions if action.type in (int, float)]
    assert untyped == []  # a number without a range type would take 0, -1, nan
    options = dict(numeric_options())
    assert {"--batch-size", "--num-shards", "--cpu-threads", "--max-tokens-per-batch", "--max-items-per-batch",
            "--model-copies", "--cost-per-hour", "--max-dead-letter-share"} <= set(options)
    for flag, kind in options.items():
        with pytest.raises(UsageError) as info:
            label_corpus.parse_args([*BASE, flag, "-1"])
        assert str(info.value) == f"argument {flag}: '-1' is not {kind.__name__}"


@pytest.mark.parametrize("typo, suggestion", [("--batch-sise", "--batch-size"), ("--modles", "--models"),
                                              ("--direct-num-workers", "--direct_num_workers"),
                                              ("--temp-location", "--temp_location")])
def test_an_unknown_option_is_named_with_the_closest_known_flag(typo, suggestion):
    with pytest.raises(UsageError, match=f"unknown option {typo}: .*did you mean {suggestion}\\?"):
        label_corpus.parse_args([*BASE, typo, "64"])


def test_a_stray_value_is_an_error_not_silently_dropped():
    with pytest.raises(UsageError, match="unexpected argument 'in/b.jsonl'.*quote"):  # an unquoted glob's 2nd file
        label_corpus.parse_args(["--input", "in/a.jsonl", "in/b.jsonl", "--output", "out"])


BEAM_ARGS = [["--runner", "DirectRunner", "--direct_num_workers", "2", "--direct_running_mode=multi_processing"],
             ["--runner=DataflowRunner", "--project", "p", "--region=us-central1", "--temp_location", "gs://b/t",
              "--setup_file", "./setup.py", "--save_main_session", "--no_use_public_ips", "--labels", "team=x",
              "--worker_machine_type=n2-standard-8", "--num_workers=2", "--service_account_email=a@b.c"],
             dataflow_flags.common_flags(project="p", region="r", bucket="b", date="2024-05-01", kind="gpu")
             + dataflow_flags.gpu_worker_flags("image:tag"),
             dataflow_flags.common_flags(project="p", region="r", bucket="b", date="2024-05-01", kind="cpu"),
             ["--runner=DataflowRunner", "--batch_size", "3"], ["--projekt=p"], ["--experiments=a", "-x"]]


@pytest.mark.parametrize("beam_args", BEAM_ARGS)
def test_an_argument_is_refused_exactly_when_beam_would_discard_it(beam_args, caplog):
    """The reference: Beam's own PipelineOptions, which logs what it discards and runs without it."""
    with caplog.at_level(logging.WARNING, logger="apache_beam.options.pipeline_options"):
        PipelineOptions(beam_args).get_all_options()
    beam_discards = any("Discarding" in record.getMessage() for record in caplog.records)
    try:
        args, left = label_corpus.parse_args([*BASE, *beam_args])
    except UsageError:
        refused = True
    else:
        refused = False
        assert left == beam_args and args.input == "in/*.jsonl"
    assert refused == beam_discards


def test_date_only_where_a_path_has_a_place_for_it():
    flags.check_date("posts/{date}/*.jsonl", "labels", "2024-05-01")
    flags.check_date("posts/*.jsonl", "labels/date={date}", "2024-05-01")
    flags.check_date("posts/*.jsonl", "labels", None)
    with pytest.raises(UsageError, match=r"--date 2024-05-01 is given but neither --input nor --output contains"):
        flags.check_date("posts/*.jsonl", "labels", "2024-05-01")


def test_an_output_among_the_inputs_or_that_is_a_file_is_refused(tmp_path):
    posts = tmp_path / "posts"
    (posts / "day1").mkdir(parents=True)
    (posts / "a.jsonl").write_text("{}\n")
    (tmp_path / "link").symlink_to(posts)

    def problem(output, pattern):
        return flags.output_problem(str(output), str(pattern), os.path.isfile)

    refused = [(posts, posts / "*.jsonl"), (posts, posts / "a.jsonl"),  # the inputs' directory itself
               (tmp_path / "link", posts / "*.jsonl"), (f"{posts}/", posts / "*.jsonl"),  # other spellings of it
               (posts / "day1" / "labels", posts / "**" / "*.jsonl"),  # inside, where '**' reaches
               (posts / "labels", posts / "*" / "*.jsonl"),  # a wildcard directory: posts/labels/x.jsonl is read
               (posts / "out.jsonl", posts / "*.jsonl"),  # named like an input: the next run reads it
               ("gs://b/posts/date=1", "gs://b/posts/date=1/*.jsonl.gz"), ("gs://b/posts", "gs://b/**")]
    for output, pattern in refused:
        assert "input directory" in problem(output, pattern), (output, pattern)
    assert "existing file" in problem(posts / "a.jsonl", posts / "*.jsonl")
    fine = [(tmp_path / "labels", posts / "*.jsonl"), (posts / "labels", posts / "*.jsonl"),  # beside the files
            (posts / "labels", posts / "a.jsonl"), (tmp_path / "postsx", posts / "*.jsonl"),
            ("gs://b/labels/date=1", "gs://b/posts/date=1/*.jsonl.gz"), (tmp_path / "out", "gs://b/posts/*")]
    for output, pattern in fine:
        assert problem(output, pattern) is None, (output, pattern)


# ---- through the command line: exit 2, one line naming the flag, nothing written, no model loaded

@pytest.mark.parametrize("extra, output, says", [
    (["--batch-size", "0"], "out", "--batch-size: '0' is not an integer >= 1"),
    (["--num-shards", "-1"], "out", "--num-shards: '-1' is not an integer >= 0"),
    (["--batch-sise", "64"], "out", "unknown option --batch-sise: .* did you mean --batch-size?"),
    (["--date", "2024-05-01"], "out", "--date 2024-05-01 is given but neither --input nor --output contains"),
    ([], "in", "--output '.*in' is an input directory"),
    ([], "in/a.jsonl", "--output '.*a.jsonl' is an existing file"),
    # names as words, not a Python list
    (["--only", "sentiment,nope"], "out", "--only names classifier\\(s\\) nope that this run does not have; it has: "
                                          "politics, stars, sentiment, emotion$"),
    (["--languages", "nope=en"], "out",
     "with NAME one of the run's classifiers \\(emotion, politics, sentiment, stars\\)$"),
])
def test_the_command_line_refuses_before_reading_or_loading(tmp_path, monkeypatch, capsys, extra, output, says):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_text('{"id": "1", "text": "hello"}\n')
    before = sorted(os.walk(tmp_path))

    def no_models(*_, **__):
        raise AssertionError("models loaded before the command line was checked")

    monkeypatch.setattr(labeling, "load_classifiers", no_models)
    code = label_corpus.main(["--input", str(tmp_path / "in" / "*.jsonl"), "--output", str(tmp_path / output),
                              "--only", "sentiment", *extra])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, lines
    assert re.search(says, lines[0]), lines[0]
    assert sorted(os.walk(tmp_path)) == before  # nothing written, in the inputs or anywhere


# ---- every Beam runner's options: Beam registers an options class only when its module is imported

RUNNER_OPTIONS = {"Dataflow": ["--dataflow_service_options", "enable_prime"], "Flink": ["--flink_master", "localhost:8081"],
                  "Spark": ["--spark_master_url", "local[2]"], "Prism": ["--prism_location", "/opt/prism"],
                  "Dask": ["--dask_client_address", "tcp://127.0.0.1:8786"],
                  "Portable": ["--job_endpoint", "embed", "--environment_type", "EXTERNAL"]}


@pytest.mark.parametrize("runner", sorted(RUNNER_OPTIONS))
def test_each_runners_options_pass_the_check_and_a_misspelt_one_is_refused(runner, tmp_path, monkeypatch, capsys):
    option = RUNNER_OPTIONS[runner]
    args, left = label_corpus.parse_args([*BASE, *option])
    assert left == option and args.output == "out"  # handed to Beam as given
    misspelt = option[0][:-2] + option[0][-1:]  # --flink_mastr
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_text('{"id": "1", "text": "hello"}\n')
    monkeypatch.setattr(labeling, "load_classifiers", lambda *_, **__: pytest.fail("models loaded"))
    code = label_corpus.main(["--input", str(tmp_path / "in" / "*.jsonl"), "--output", str(tmp_path / "out"),
                              "--only", "sentiment", misspelt, *option[1:2]])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and lines == [f"label_corpus: unknown option {misspelt}: neither label_corpus's nor a Beam "
                                   f"pipeline option; did you mean {option[0]}?"]
    assert not (tmp_path / "out").exists()


def test_the_dask_runners_options_are_known_even_where_dask_is_not_installed():
    """Its module imports dask at the top: without dask the check reads its options from the source."""
    import importlib.util

    declared = dict(flags._declared_options("apache_beam.runners.dask.dask_runner"))
    assert declared["--dask_client_address"] is True and {"--dask_npartitions", "--dask_connection_timeout"} <= set(declared)
    assert set(declared) <= set(flags.beam_options())
    if importlib.util.find_spec("dask") is None:
        assert not flags._imports("apache_beam.runners.dask.dask_runner")


def test_every_beam_module_that_defines_pipeline_options_is_imported_by_the_check():
    """Beam's installed sources are the reference: a module (outside its tests and examples) with a
    class deriving from PipelineOptions that the check does not import would leave its options out."""
    import ast

    import apache_beam

    root = os.path.dirname(apache_beam.__file__)
    defining = set()
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in ("examples", "testing", "__pycache__")]
        for name in files:
            if not name.endswith(".py") or name.endswith("_test.py") or name.startswith("test_"):
                continue
            path = os.path.join(folder, name)
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
            if "PipelineOptions)" not in text:
                continue
            bases = [getattr(base, "attr", getattr(base, "id", None))
                     for node in ast.walk(ast.parse(text)) if isinstance(node, ast.ClassDef) for base in node.bases]
            if "PipelineOptions" in bases:
                defining.add(os.path.relpath(path, os.path.dirname(root))[:-3].replace(os.sep, "."))
    assert "apache_beam.runners.dask.dask_runner" in defining  # the scan sees what it looks for
    assert defining - {"apache_beam.options.pipeline_options"} <= set(flags.BEAM_OPTION_MODULES)


@pytest.mark.parametrize("environment, says, fixed", [
    (["--environment_type", flags.SUBPROCESS_HARNESS], "needs the command line of the worker process: "
                                                       "--environment_config 'python -m apache_beam",
     ["--environment_type", flags.SUBPROCESS_HARNESS, "--environment_config", flags.SDK_WORKER_COMMAND]),
    (["--environment_type", "PROCESS", "--environment_config", '{"command": "/bin/true"}'],
     "embedded in the launcher (--job_endpoint embed) has no PROCESS environment",
     ["--environment_type", "EXTERNAL", "--environment_config", "localhost:50000"])])
def test_a_portable_environment_beam_would_fail_on_is_one_line(environment, says, fixed, tmp_path, capsys):
    """Beam itself fails at launch with a traceback: AttributeError ('NoneType' ... 'encode') for the
    first, KeyError 'beam:env:process:v1' in the job for the second."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_text('{"id": "1", "text": "hello"}\n')
    embedded = ["--runner", "PortableRunner", "--job_endpoint", "embed"]
    code = label_corpus.main(["--input", str(tmp_path / "in" / "*.jsonl"), "--output", str(tmp_path / "out"),
                              "--only", "sentiment", *embedded, *environment])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and says in lines[0], lines
    assert not (tmp_path / "out").exists()
    assert flags.environment_problem([*embedded, *fixed]) is None  # what the line says to do passes
