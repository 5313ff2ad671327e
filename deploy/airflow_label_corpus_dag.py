"""Airflow DAG: label one date partition a day on Dataflow GPU workers, then report on it.

Install: copy this file, deploy/airflow_common.py and deploy/dataflow_flags.py into the DAGs folder; install this
repository into the Airflow workers' Python (`pip install -c constraints.txt '.[gcp]'`, the
CPU build of torch is enough: the launcher only validates checkpoints and submits the job)
with apache-airflow-providers-apache-beam and apache-airflow-providers-google. Set the Airflow
Variables label_corpus_project, label_corpus_region, label_corpus_bucket and label_corpus_image.

Each run labels the day that has just ended: {{ ds }} is the run's logical date. --skip-if-done
makes a retried or re-triggered run a no-op once the partition has _SUCCESS with the same
checkpoints; Dataflow refuses a second job of the same name while one runs.
"""
from __future__ import annotations

from airflow.providers.apache.beam.operators.beam import BeamRunPythonPipelineOperator
from airflow.providers.google.cloud.operators.dataflow import DataflowConfiguration

try:  # Airflow 3
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG

from airflow_common import BUCKET, DAILY, DATE, PROJECT, REGION, partition_paths, report_task
from dataflow_flags import as_options_dict, job_args

IMAGE = "{{ var.value.label_corpus_image }}"
# The operator sets these from dataflow_config; the rest of the flags are the launch script's.
SET_BY_OPERATOR = ("runner", "project", "region", "job_name")


def pipeline_options() -> dict:
    flags = job_args("gpu", project=PROJECT, region=REGION, bucket=BUCKET, date=DATE, image=IMAGE)
    options = {key: value for key, value in as_options_dict(flags).items() if key not in SET_BY_OPERATOR}
    return {
        **partition_paths(),  # {date} is filled by --date
        "date": DATE,
        "skip-if-done": True,  # rendered as a bare --skip-if-done
        **options,
    }


with DAG(
    dag_id="label_corpus_daily",
    description="Label the day's posts with the four classifiers on Dataflow GPU workers",
    **DAILY,
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
    label >> report_task()
