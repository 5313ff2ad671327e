"""The DAGs of deploy/ under the real Airflow 3.3 with the Beam, standard and Google providers,
driven through subprocesses of its own venv (.venv-airflow, which .ci/run builds; AIRFLOW_VENV
names another), so Airflow's pins never touch the product's test venv. Each test module run
gets an AIRFLOW_HOME of its own with a sqlite database; Variables come as AIRFLOW_VAR_* (what
`airflow variables set` would store). Without that venv every test here is skipped."""
from __future__ import annotations

import gzip
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from pipelines import label_corpus

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
VENV = Path(os.environ.get("AIRFLOW_VENV", ROOT / ".venv-airflow"))
PYTHON = VENV / "bin" / "python"
AIRFLOW = VENV / "bin" / "airflow"
DAG_FILES = ("airflow_label_corpus_dag.py", "airflow_label_corpus_flex_dag.py")
IMAGE = "us-central1-docker.pkg.dev/my-project/labeling/label-corpus:0.1.0"
DATAFLOW_VARIABLES = {"project": "my-project", "region": "us-central1", "bucket": "my-bucket", "image": IMAGE,
                      "template": "gs://my-bucket/templates/label-corpus.json"}

pytestmark = [pytest.mark.airflow,
              pytest.mark.skipif(not AIRFLOW.exists(), reason=f"no Airflow venv at {VENV} (.ci/run builds it: "
                                                              "see README, 'Tests')")]


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory) -> Path:
    """AIRFLOW_HOME with a DAGs folder laid out as deploy/README.md says, a migrated sqlite db
    and the DAGs serialized in it (as the DAG processor would)."""
    home = tmp_path_factory.mktemp("airflow_home")
    dags = home / "dags"
    dags.mkdir()
    for name in (*DAG_FILES, "airflow_common.py", "dataflow_flags.py"):
        shutil.copy(DEPLOY / name, dags / name)
    for command in (["db", "migrate"], ["dags", "reserialize"]):
        done = subprocess.run([str(AIRFLOW), *command], env=airflow_env(home), capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    return home


def airflow_env(home: Path, **variables) -> dict:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("AIRFLOW", "PYTHONPATH", "VIRTUAL_ENV"))}
    env.update({
        "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "PATH": f"{VENV / 'bin'}:{env.get('PATH', '')}",
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
    })
    env.update({f"AIRFLOW_VAR_LABEL_CORPUS_{name.upper()}": str(value) for name, value in variables.items()})
    return env


DATAFLOW = {"runner": "DataflowRunner", **DATAFLOW_VARIABLES}
LOCAL = {"runner": "DirectRunner", "input": "/data/posts/date={date}/*.jsonl.gz", "output": "/data/labels/date={date}",
         "models": "/srv/checkpoints/models.json", "python": "/opt/labeling/bin/python"}
REQUESTS = {
    "parse dataflow": {"do": "parse", "variables": {"runner": "DataflowRunner"}},
    "parse direct": {"do": "parse", "variables": {"runner": "DirectRunner", "retries": 1, "retry_delay_s": 2,
                                                  "timeout_s": 30}},
    "parse bad runner": {"do": "parse", "variables": {"runner": "SparkRunner"}},
    "scheduled": {"do": "render", "dag_id": "label_corpus_daily", "scheduled_at": "2026-12-02T00:00:00+00:00",
                  "variables": LOCAL},
    "dataflow": {"do": "render", "dag_id": "label_corpus_daily", "logical_date": "2026-11-20", "variables": DATAFLOW},
    "direct": {"do": "render", "dag_id": "label_corpus_daily", "logical_date": "2026-11-20", "variables": LOCAL},
    "flex": {"do": "render", "dag_id": "label_corpus_daily_flex", "logical_date": "2026-11-20",
             "variables": DATAFLOW},
}


@pytest.fixture(scope="module")
def airflow_says(airflow_home) -> dict:
    """What Airflow answers to REQUESTS (tests/airflow_probe.py, one Airflow process for all)."""
    done = subprocess.run([str(PYTHON), str(ROOT / "tests" / "airflow_probe.py")], input=json.dumps(list(REQUESTS.values())),
                          env=airflow_env(airflow_home), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return dict(zip(REQUESTS, json.loads(done.stdout.strip().splitlines()[-1])))


def no_templates_left(value) -> None:
    assert "{{" not in json.dumps(value) and "{%" not in json.dumps(value), value


# ---------------------------------------------------------------- parsing

def test_every_dag_file_in_deploy_parses_in_dagbag(airflow_says):
    assert {path.name for path in DEPLOY.glob("airflow_*dag*.py")} == set(DAG_FILES)  # none left out of the test
    parsed = airflow_says["parse dataflow"]
    assert parsed["import_errors"] == {}
    assert set(parsed["dags"]) == {"label_corpus_daily", "label_corpus_daily_flex"}
    for dag in parsed["dags"].values():
        label = dag["tasks"]["label_partition"]
        assert label["downstream"] == ["report_partition"]
        assert (label["retries"], label["retry_delay_s"], label["execution_timeout_s"]) == (2, 900, None)  # defaults
    assert "BeamRunPythonPipelineOperator" in parsed["dags"]["label_corpus_daily"]["tasks"]["label_partition"]["operator"]
    assert "DataflowStartFlexTemplateOperator" in parsed["dags"]["label_corpus_daily_flex"]["tasks"]["label_partition"][
        "operator"]

    direct = airflow_says["parse direct"]
    assert direct["import_errors"] == {}
    task = direct["dags"]["label_corpus_daily"]["tasks"]["label_partition"]
    assert (task["retries"], task["retry_delay_s"], task["execution_timeout_s"]) == (1, 2, 30)
    bad = airflow_says["parse bad runner"]  # refused where it is read; the Flex Template DAG does not read it
    assert [Path(p).name for p in bad["import_errors"]] == ["airflow_label_corpus_dag.py"]
    assert "label_corpus_runner" in " ".join(bad["import_errors"].values())
    assert list(bad["dags"]) == ["label_corpus_daily_flex"]


# ---------------------------------------------------------------- rendering

def test_a_scheduled_run_labels_the_day_that_has_ended(airflow_says):
    """The run the scheduler creates at 2026-12-02 00:00 UTC labels 2026-12-01."""
    rendered = airflow_says["scheduled"]
    assert rendered["run_type"] == "scheduled" and rendered["run_after"] == "2026-12-02T00:00:00+00:00"
    assert rendered["data_interval"] == ["2026-12-01T00:00:00+00:00", "2026-12-02T00:00:00+00:00"]
    assert rendered["tasks"]["label_partition"]["pipeline_options"]["date"] == "2026-12-01"
    assert shlex.split(rendered["tasks"]["report_partition"]["bash_command"])[-1] == "/data/labels/date=2026-12-01"
    # a run made by hand for a date (airflow dags test, trigger with a logical date) labels that date
    assert airflow_says["direct"]["tasks"]["label_partition"]["pipeline_options"]["date"] == "2026-11-20"


def test_dataflow_task_renders_every_argument(airflow_says):
    tasks = airflow_says["dataflow"]["tasks"]
    no_templates_left(tasks)
    label, report = tasks["label_partition"], tasks["report_partition"]
    # the Python that runs Airflow (where this package is installed), not the first python3 on PATH
    assert Path(label["py_interpreter"]).parent == VENV / "bin"
    assert [*label["py_options"], label["py_file"]] == ["-m", "pipelines.label_corpus"]
    config = label["dataflow_config"]
    assert (config["project_id"], config["location"]) == ("my-project", "us-central1")
    assert config["job_name"] == "label-corpus-gpu-2026-11-20" and config["append_job_name"] is False
    # what the operator adds from dataflow_config, then the command line the provider builds
    argv = label["args"] + [f"--project={config['project_id']}", f"--region={config['location']}",
                                  f"--job_name={config['job_name']}"]
    args, beam_args = label_corpus.parse_args(argv)
    assert (args.input, args.output) == ("gs://my-bucket/posts/date={date}/*.jsonl.gz", "gs://my-bucket/labels/date={date}")
    assert args.models == "gs://my-bucket/checkpoints/models.json"
    assert args.date == "2026-11-20" and args.skip_if_done and args.device == "cuda"
    from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions, StandardOptions, WorkerOptions

    options = PipelineOptions(beam_args)
    assert options.view_as(StandardOptions).runner == "DataflowRunner"
    assert options.view_as(GoogleCloudOptions).project == "my-project"
    assert options.view_as(GoogleCloudOptions).dataflow_service_options == [
        "worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver"]
    assert options.view_as(GoogleCloudOptions).temp_location == "gs://my-bucket/dataflow/temp"
    assert options.view_as(WorkerOptions).sdk_container_image == IMAGE
    known = set(options.get_all_options(retain_unknown_options=False))
    assert all(arg.split("=")[0].lstrip("-") in known for arg in beam_args), beam_args  # only Beam's own flags
    assert shlex.split(report["bash_command"]) == [label["py_interpreter"], "-m", "pipelines.report",
                                                   "gs://my-bucket/labels/date=2026-11-20"]


def test_direct_task_renders_local_paths_and_no_dataflow_options(airflow_says):
    tasks = airflow_says["direct"]["tasks"]
    no_templates_left(tasks)
    label = tasks["label_partition"]
    assert label["runner"] == "DirectRunner" and not label["dataflow_config"]
    assert label["py_interpreter"] == "/opt/labeling/bin/python"
    args, beam_args = label_corpus.parse_args(label["args"])
    assert (args.input, args.output, args.models) == (LOCAL["input"], LOCAL["output"], LOCAL["models"])
    assert args.date == "2026-11-20" and args.skip_if_done and args.device == "auto"
    assert beam_args == ["--runner=DirectRunner"]
    assert shlex.split(tasks["report_partition"]["bash_command"]) == [
        "/opt/labeling/bin/python", "-m", "pipelines.report", "/data/labels/date=2026-11-20"]


def test_flex_template_task_renders_the_launch_request(airflow_says):
    tasks = airflow_says["flex"]["tasks"]
    no_templates_left(tasks)
    label = tasks["label_partition"]
    assert (label["project_id"], label["location"]) == ("my-project", "us-central1")
    launch = label["body"]["launchParameter"]
    assert launch["jobName"] == "label-corpus-gpu-2026-11-20"
    assert launch["containerSpecGcsPath"] == DATAFLOW_VARIABLES["template"]
    assert launch["environment"]["tempLocation"] == "gs://my-bucket/dataflow/temp"
    parameters = launch["parameters"]
    assert parameters["date"] == "2026-11-20" and parameters["skip_if_done"] == "true"
    assert parameters["output"] == "gs://my-bucket/labels/date={date}"
    metadata = {p["name"] for p in json.loads((DEPLOY / "flex_template_metadata.json").read_text())["parameters"]}
    assert set(parameters) <= metadata
    spec = importlib.util.spec_from_file_location("flex_template_main", DEPLOY / "flex_template_main.py")
    flex = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(flex)
    args, _ = label_corpus.parse_args(flex.translate([f"--{k}={v}" for k, v in parameters.items()], IMAGE))
    assert args.date == "2026-11-20" and args.skip_if_done and not args.wait
    assert shlex.split(tasks["report_partition"]["bash_command"])[-1] == "gs://my-bucket/labels/date=2026-11-20"


# ---------------------------------------------------------------- airflow dags test, locally

def write_posts(root: Path, day: str, count: int) -> None:
    folder = root / "posts" / f"date={day}"
    folder.mkdir(parents=True)
    with gzip.open(folder / "part-0.jsonl.gz", "wt", encoding="utf-8") as handle:
        for i in range(count):
            handle.write(json.dumps({"id": f"{day}-{i}", "text": f"post {i} of {day} about the economy"}) + "\n")


def local_variables(data: Path, models: str, **more) -> dict:
    return {"runner": "DirectRunner", "input": f"{data}/posts/date={{date}}/*.jsonl.gz",
            "output": f"{data}/labels/date={{date}}", "models": models, "retries": 1, "retry_delay_s": 1, **more}


DAGS_TEST_SECONDS: list[float] = []  # how long each whole `airflow dags test` took here


def dags_test(home: Path, day: str, variables: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    started = time.monotonic()
    try:
        return subprocess.run([str(AIRFLOW), "dags", "test", "label_corpus_daily", day], env=airflow_env(home, **variables),
                              capture_output=True, text=True, timeout=timeout)
    finally:
        DAGS_TEST_SECONDS.append(time.monotonic() - started)


def task_instances(home: Path) -> list:
    """(task, try, max_tries, state) of every task instance in the test's Airflow database."""
    import sqlite3

    with sqlite3.connect(home / "airflow.db") as db:
        return db.execute("SELECT task_id, try_number, max_tries, state FROM task_instance").fetchall()


def task_log(done: subprocess.CompletedProcess) -> str:
    return done.stdout + done.stderr


def test_dags_test_with_the_direct_runner_labels_three_dates_and_a_rerun_is_a_no_op(airflow_home, tmp_path,
                                                                                     tiny_models_file):
    days = {"2026-11-18": 5, "2026-11-19": 3, "2026-11-20": 4}
    for day, count in days.items():
        write_posts(tmp_path, day, count)
    variables = local_variables(tmp_path, tiny_models_file)
    for day, count in days.items():
        done = dags_test(airflow_home, day, variables)
        log = task_log(done)
        assert done.returncode == 0, log[-6000:]
        partition = tmp_path / "labels" / f"date={day}"
        assert (partition / "_SUCCESS").exists(), log[-6000:]
        manifest = json.loads((partition / "_manifest.json").read_text())
        assert manifest["date"] == day and manifest["rows_written"] == count
        assert "Partition complete (_SUCCESS): yes" in (partition / "_report" / "report.md").read_text()
        assert f"--date={day}" in log and "--skip-if-done" in log  # the command the task ran
        assert "rows written" in log.lower() or "rows_written" in log, log[-6000:]  # the job's summary lines
    assert sorted(p.name for p in (tmp_path / "labels").iterdir()) == [f"date={day}" for day in days]

    success = tmp_path / "labels" / "date=2026-11-19" / "_SUCCESS"
    before = success.stat().st_mtime_ns
    again = dags_test(airflow_home, "2026-11-19", variables)
    assert again.returncode == 0, task_log(again)[-6000:]
    assert "(--skip-if-done)" in task_log(again)  # the job said it found the partition complete
    assert success.stat().st_mtime_ns == before


SLOW_FIRST_TRY = '''\
"""Loaded by every Python this test's DAG starts: the labeling job of the task's first try
(AIRFLOW_CTX_TRY_NUMBER, set by Airflow for the task's processes) stalls when it is about to
commit, so that Airflow's execution_timeout strikes mid-job. Each job that reaches the commit
writes its pid and try."""
import os, sys, time
if "pipelines.label_corpus" in " ".join(sys.orig_argv):  # sys.argv is still ["-m", ...] here
    from transforms import partition
    marks, commit = os.environ["SLOW_FIRST_TRY_DIR"], partition.commit

    def stalled(*args, **kwargs):
        try_number = os.environ.get("AIRFLOW_CTX_TRY_NUMBER", "?")
        with open(os.path.join(marks, "commits"), "a") as handle:
            handle.write(f"{os.getpid()} {try_number}\\n")
        if try_number == "1":
            time.sleep(3600)
        return commit(*args, **kwargs)

    partition.commit = stalled
'''


def test_a_task_airflow_times_out_leaves_the_partition_as_it_was_and_the_retry_completes_it(
        airflow_home, tmp_path, tiny_models_file):
    """execution_timeout strikes while the first try's job waits to commit: the job is stopped
    (not left to commit later beside the retry), the partition is left as it was, and the retry
    labels it. The timeout is a few times what a whole `dags test` took in the test above, so a
    slow machine does not time out a try that is not stalled."""
    day = "2026-11-21"
    write_posts(tmp_path, day, 4)
    marks, hook = tmp_path / "marks", tmp_path / "hook"
    marks.mkdir()
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SLOW_FIRST_TRY)
    wrapper = tmp_path / "python"  # label_corpus_python: the Airflow venv's Python with the hook on its path
    wrapper.write_text(f"#!/bin/bash\nexport PYTHONPATH={hook} SLOW_FIRST_TRY_DIR={marks}\nexec {PYTHON} \"$@\"\n")
    wrapper.chmod(0o755)
    timeout_s = max(30, round(2 * max(DAGS_TEST_SECONDS, default=60)))
    variables = local_variables(tmp_path, tiny_models_file, python=wrapper, timeout_s=timeout_s, retry_delay_s=1)
    done = dags_test(airflow_home, day, variables, timeout=6 * timeout_s + 120)
    log = task_log(done)
    commits = [line.split() for line in (marks / "commits").read_text().splitlines()] if (
        marks / "commits").exists() else []
    assert [try_number for _, try_number in commits] == ["1", "2"], (task_instances(airflow_home), log[-8000:])
    assert "AirflowTaskTimeout" in log or "Timeout" in log, log[-8000:]
    assert "stopping the labeling job" in log, log[-8000:]
    assert done.returncode == 0, log[-8000:]
    partition = tmp_path / "labels" / f"date={day}"
    manifest = json.loads((partition / "_manifest.json").read_text())
    assert manifest["rows_written"] == 4 and (partition / "_SUCCESS").exists()
    with pytest.raises(ProcessLookupError):  # the first try's job did not outlive its task
        os.kill(int(commits[0][0]), 0)
