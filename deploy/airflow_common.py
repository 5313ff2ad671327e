"""What the two Airflow DAGs share: the Airflow Variables and date they render, where a date's
partition lives in the bucket, the daily schedule and retry policy, and the report task.

Copy it into the DAGs folder beside the DAG you use and deploy/dataflow_flags.py.
"""
from __future__ import annotations

from datetime import datetime, timedelta

PROJECT = "{{ var.value.label_corpus_project }}"
REGION = "{{ var.value.label_corpus_region }}"
BUCKET = "{{ var.value.label_corpus_bucket }}"
DATE = "{{ ds }}"  # the run's logical date: the day that has just ended

# One run a day, never two at once; a lost or failed run is retried, and --skip-if-done makes a
# retry of a completed partition a no-op.
DAILY = dict(
    schedule="@daily",
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=15)},
    tags=["labeling", "dataflow"],
)


def partition_paths() -> dict[str, str]:
    """The job's input glob, output partition and models file in the bucket ({date} is filled by
    the job's date)."""
    return {
        "input": f"gs://{BUCKET}/posts/date={{date}}/*.jsonl.gz",
        "output": f"gs://{BUCKET}/labels/date={{date}}",
        "models": f"gs://{BUCKET}/checkpoints/models.json",
    }


def report_task():
    """The task that writes the report of the date's partition (after the labeling task)."""
    try:  # Airflow 3
        from airflow.providers.standard.operators.bash import BashOperator
    except ImportError:  # Airflow 2
        from airflow.operators.bash import BashOperator

    return BashOperator(task_id="report_partition",
                        bash_command=f"python -m pipelines.report gs://{BUCKET}/labels/date={DATE}")
