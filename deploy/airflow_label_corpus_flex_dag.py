"""Airflow DAG: one partition a day through the Dataflow Flex Template, then the report.

Install (Airflow 3.3): copy this file, deploy/airflow_common.py and deploy/dataflow_flags.py into
the DAGs folder. Needs the Google and standard providers (the `airflow` extra) and the Airflow
Variables label_corpus_project, label_corpus_region, label_corpus_bucket and
label_corpus_template (the gs:// path that `gcloud dataflow flex-template build` wrote, see
deploy/README.md); label_corpus_input, _output and _models as in airflow_common.py. Dataflow
only: label_corpus_runner is not read here.

The job commits its own partition, so the operator may be deferrable (the wait runs in the
triggerer, not a worker slot; the provider refuses wait_until_finished beside deferrable, the
trigger waits for the end of the job) and a worker lost while waiting loses nothing: the retry finds
the partition complete (skip_if_done) or the job still running (a second job of the same name
is refused by Dataflow while the first runs; if one starts anyway, the partition's commit lock
lets only one run commit and the other fails loudly).
"""
from __future__ import annotations

from airflow.providers.google.cloud.operators.dataflow import DataflowStartFlexTemplateOperator
from airflow.sdk import DAG

from airflow_common import BUCKET, DAILY, DATE, INPUT, MODELS, OUTPUT, PROJECT, REGION, report_task
from dataflow_flags import DEFAULT_MAX_WORKERS, job_name

TEMPLATE = "{{ var.value.label_corpus_template }}"


def launch_body() -> dict:
    """The projects.locations.flexTemplates.launch request."""
    return {
        "launchParameter": {
            "jobName": job_name(DATE, "gpu"),
            "containerSpecGcsPath": TEMPLATE,
            "parameters": {
                "input": INPUT,  # {date} is filled by date
                "output": OUTPUT,
                "models": MODELS,
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
    tags=["labeling", "dataflow"],
    **DAILY,
) as dag:
    label = DataflowStartFlexTemplateOperator(
        task_id="label_partition",
        project_id=PROJECT,
        location=REGION,
        body=launch_body(),
        deferrable=True,
        append_job_name=False,
    )
    label >> report_task()
