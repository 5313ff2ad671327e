"""Airflow DAG: label one date partition a day on Dataflow GPU workers, then report on it.

Install: copy this file and deploy/dataflow_flags.py into the DAGs folder; install this
repository into the Airflow workers' Python (`pip install -c constraints.txt '.[gcp]'`, the
CPU build of torch is enough: the launcher only validates checkpoints and submits the job)
with apache-airflow-providers-apache-beam and apache-airflow-providers-google. Set the Airflow
Variables label_corpus_project, label_corpus_region, label_corpus_bucket and label_corpus_image.

Each run labels the day that has just ended: {{ ds }} is the run's logical date. --skip-if-done
makes a retried or re-triggered run a no-op once the partition has _SUCCESS with the same
checkpoints; Dataflow refuses a second job of the same name while one runs.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.apache.beam.operators.beam import BeamRunPythonPipelineOperator
from airflow.providers.google.cloud.operators.dataflow import DataflowConfiguration

try:  # Airflow 3
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.operators.bash import BashOperator

from dataflow_flags import as_options_dict, job_args

PROJECT = "{{ var.value.label_corpus_project }}"
REGION = "{{ var.value.label_corpus_region }}"
BUCKET = "{{ var.value.label_corpus_bucket }}"
IMAGE = "{{ var.value.label_corpus_image }}"
DATE = "{{ ds }}"
# The operator sets these from dataflow_config; the rest of the flags are the launch script's.
SET_BY_OPERATOR = ("runner", "project", "region", "job_name")


def pipeline_options() -> dict:
    flags = job_args("gpu", project=PROJECT, region=REGION, bucket=BUCKET, date=DATE, image=IMAGE)
    options = {key: value for key, value in as_options_dict(flags).items() if key not in SET_BY_OPERATOR}
    return {
        "input": f"gs://{BUCKET}/posts/date={{date}}/*.jsonl.gz",  # {date} is filled by --date
        "output": f"gs://{BUCKET}/labels/date={{date}}",
        "models": f"gs://{BUCKET}/checkpoints/models.json",
        "date": DATE,
        "skip-if-done": True,  # rendered as a bare --skip-if-done
        **options,
    }


with DAG(
    dag_id="label_corpus_daily",
    description="Label the day's posts with the four classifiers on Dataflow GPU workers",
    schedule="@daily",
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=15)},
    tags=["labeling", "dataflow"],
) as dag:
    label = BeamRunPythonPipelineOperator(
        task_id="label_partition",
        runner="DataflowRunner",
        py_file="pipelines.label_corpus",
        py_options=["-m"],  # python -m pipelines.label_corpus --input=... --date=... --skip-if-done ...
        pipeline_options=pipeline_options(),
        dataflow_config=DataflowConfiguration(
            job_name="label-corpus-gpu-{{ ds }}",
            append_job_name=False,  # one name per date: a duplicate launch is refused while one runs
            project_id=PROJECT,
            location=REGION,
            wait_until_finished=True,
        ),
    )
    report = BashOperator(
        task_id="report_partition",
        bash_command=f"python -m pipelines.report gs://{BUCKET}/labels/date={DATE}",
    )
    label >> report
