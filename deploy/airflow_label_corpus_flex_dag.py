"""Airflow DAG: one partition a day through the Dataflow Flex Template, then the report.

Needs apache-airflow-providers-google and the Airflow Variables label_corpus_project,
label_corpus_region, label_corpus_bucket and label_corpus_template (the gs:// path that
`gcloud dataflow flex-template build` wrote, see deploy/README.md).

The job commits its own partition, so the operator may be deferrable (the wait runs in the
triggerer, not a worker slot) and a worker lost while waiting loses nothing: the retry finds
the partition complete (skip_if_done) or the job still running (a second job of the same name
is refused by Dataflow while the first runs; if one starts anyway, the partition's commit lock
lets only one run commit and the other fails loudly).
"""
from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.google.cloud.operators.dataflow import DataflowStartFlexTemplateOperator

try:  # Airflow 3
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.operators.bash import BashOperator

from dataflow_flags import DEFAULT_MAX_WORKERS, job_name

PROJECT = "{{ var.value.label_corpus_project }}"
REGION = "{{ var.value.label_corpus_region }}"
BUCKET = "{{ var.value.label_corpus_bucket }}"
TEMPLATE = "{{ var.value.label_corpus_template }}"
DATE = "{{ ds }}"


def launch_body() -> dict:
    """The projects.locations.flexTemplates.launch request."""
    return {
        "launchParameter": {
            "jobName": job_name(DATE, "gpu"),
            "containerSpecGcsPath": TEMPLATE,
            "parameters": {
                "input": f"gs://{BUCKET}/posts/date={{date}}/*.jsonl.gz",  # {date} is filled by date
                "output": f"gs://{BUCKET}/labels/date={{date}}",
                "models": f"gs://{BUCKET}/checkpoints/models.json",
                "date": DATE,
                "skip_if_done": "true",
            },
            "environment": {
                "tempLocation": f"gs://{BUCKET}/dataflow/temp",
                "stagingLocation": f"gs://{BUCKET}/dataflow/staging",
                "maxWorkers": DEFAULT_MAX_WORKERS,
                "autoscalingAlgorithm": "AUTOSCALING_ALGORITHM_BASIC",
            },
        }
    }


with DAG(
    dag_id="label_corpus_daily_flex",
    description="Label the day's posts through the Dataflow Flex Template on GPU workers",
    schedule="@daily",
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=15)},
    tags=["labeling", "dataflow"],
) as dag:
    label = DataflowStartFlexTemplateOperator(
        task_id="label_partition",
        project_id=PROJECT,
        location=REGION,
        body=launch_body(),
        wait_until_finished=True,
        deferrable=True,
        append_job_name=False,
    )
    report = BashOperator(
        task_id="report_partition",
        bash_command=f"python -m pipelines.report gs://{BUCKET}/labels/date={DATE}",
    )
    label >> report
