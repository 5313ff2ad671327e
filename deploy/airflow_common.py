"""What the two Airflow DAGs share: the Airflow Variables they read and render, the date a run
labels, where a date's partition lives, the daily schedule and retry policy, and the report task.

Copy it into the DAGs folder beside the DAG you use and deploy/dataflow_flags.py. Airflow 3.

Variables (all optional but those a Dataflow run needs; `airflow variables set NAME VALUE`):

| Variable | default | read |
|---|---|---|
| label_corpus_runner | DataflowRunner (or DirectRunner: on the Airflow worker itself) | when the DAG file is parsed |
| label_corpus_python | the Python that runs Airflow (this package must be installed in it) | parsed |
| label_corpus_retries, label_corpus_retry_delay_s | 2, 900 | parsed |
| label_corpus_timeout_s | none (a task may run as long as its job) | parsed |
| label_corpus_project, label_corpus_region, label_corpus_bucket | none: required by DataflowRunner | at each run |
| label_corpus_image | none: the GPU workers' image (daily DAG on DataflowRunner) | at each run |
| label_corpus_input, label_corpus_output | gs://BUCKET/posts/date={date}/*.jsonl.gz, gs://BUCKET/labels/date={date} | at each run |
| label_corpus_models | gs://BUCKET/checkpoints/models.json | at each run |

What a parsed Variable changes (which operator options a task gets, its retries) shows once the
DAG processor has parsed the file again; the others are rendered into each run's command line.
"""
from __future__ import annotations

import shlex
import sys
from datetime import datetime, timedelta

from airflow.sdk import Variable
from airflow.timetables.interval import CronDataIntervalTimetable


def setting(name: str, default):
    """A Variable read when the DAG file is parsed (for what templates cannot reach: the operator's
    options, its interpreter, retries), as the type of its default."""
    value = Variable.get(f"label_corpus_{name}", default="")
    return type(default)(value) if value != "" else default


def _variable(name: str, fallback: str) -> str:
    """Jinja: the Variable's value, or the fallback expression when it is unset or empty (Jinja's
    `or` evaluates the fallback only then, so a local run needs no bucket)."""
    return f"(var.value.get('label_corpus_{name}', '') or {fallback})"


PYTHON = setting("python", sys.executable)

PROJECT = "{{ var.value.label_corpus_project }}"
REGION = "{{ var.value.label_corpus_region }}"
BUCKET = "{{ var.value.label_corpus_bucket }}"
_IN_BUCKET = "'gs://' ~ var.value.label_corpus_bucket ~ '/%s'"
_OUTPUT = _variable("output", _IN_BUCKET % "labels/date={date}")
INPUT = "{{ %s }}" % _variable("input", _IN_BUCKET % "posts/date={date}/*.jsonl.gz")
OUTPUT = "{{ %s }}" % _OUTPUT  # {date} is filled by the job's --date
MODELS = "{{ %s }}" % _variable("models", _IN_BUCKET % "checkpoints/models.json")
PARTITION = "{{ %s | replace('{date}', ds) }}" % _OUTPUT  # the run's partition itself

# The day a run labels. The schedule below is a data-interval timetable: the run that starts at
# 00:00 UTC covers the day that has just ended, and its logical date ({{ ds }}) is that day. A
# run triggered by hand for a date (`airflow dags test label_corpus_daily 2026-11-20`) labels
# that date.
DATE = "{{ ds }}"

# One run a day, never two at once; a lost or failed run is retried, and --skip-if-done makes a
# retry of a completed partition a no-op.
_timeout = setting("timeout_s", 0.0)
DAILY = dict(
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={
        "retries": setting("retries", 2),
        "retry_delay": timedelta(seconds=setting("retry_delay_s", 900.0)),
        "execution_timeout": timedelta(seconds=_timeout) if _timeout > 0 else None,
    },
)


def report_task():
    """The task that writes the report of the date's partition (after the labeling task)."""
    from airflow.providers.standard.operators.bash import BashOperator

    return BashOperator(task_id="report_partition",
                        bash_command=f"{shlex.quote(PYTHON)} -m pipelines.report \"{PARTITION}\"")
