"""Airflow DAG: label one date partition a day, then report on it; on Dataflow GPU workers, or
with the DirectRunner on the Airflow worker itself (Variable label_corpus_runner).

Install (Airflow 3.3): copy this file, deploy/airflow_common.py and deploy/dataflow_flags.py into
the DAGs folder, and install this repository into the Airflow workers' Python with Airflow and
its Beam, standard and Google providers (`pip install -c constraints.txt -c
constraints-airflow.txt -e '.[airflow,gcp]'`; the CPU build of torch is enough for Dataflow:
the launcher only validates checkpoints and submits the job). The Variables are listed in
airflow_common.py; for Dataflow set label_corpus_project, label_corpus_region,
label_corpus_bucket and label_corpus_image. deploy/README.md shows a local try-out.

Each run labels its logical date: the day that has just ended, for a scheduled run.
--skip-if-done makes a retried or re-triggered run a no-op once the partition has _SUCCESS with
the same checkpoints; Dataflow refuses a second job of the same name while one runs.
"""
from __future__ import annotations

from airflow.providers.apache.beam.operators.beam import BeamRunPythonPipelineOperator
from airflow.sdk import DAG

from airflow_common import BUCKET, DAILY, DATE, INPUT, MODELS, OUTPUT, PROJECT, PYTHON, REGION, report_task, setting
from dataflow_flags import as_options_dict, job_args, job_name

IMAGE = "{{ var.value.label_corpus_image }}"
RUNNER = setting("runner", "DataflowRunner")
if RUNNER not in ("DataflowRunner", "DirectRunner"):
    raise ValueError(f"Variable label_corpus_runner must be DataflowRunner or DirectRunner, not {RUNNER!r}")


class LabelPartitionOperator(BeamRunPythonPipelineOperator):
    """The provider's operator, whose on_kill (execution_timeout, a task marked failed, a SIGTERM
    to the task) also stops the job's own process: the provider cancels only a Dataflow job whose
    id it has seen, so a DirectRunner job, or a launcher still submitting, ran on beside the retry.
    The job gets SIGTERM and JOB_STOP_S to stop cleanly, then SIGKILL."""

    JOB_STOP_S = 60

    def on_kill(self) -> None:
        super().on_kill()
        import psutil  # an Airflow dependency

        def command(process) -> str:
            try:
                return " ".join(process.cmdline())
            except psutil.Error:  # gone meanwhile
                return ""

        jobs = [child for child in psutil.Process().children(recursive=True)
                if "pipelines.label_corpus" in command(child)]
        for job in jobs:
            self.log.warning("stopping the labeling job (pid %s)", job.pid)
            job.terminate()
        _, alive = psutil.wait_procs(jobs, timeout=self.JOB_STOP_S)
        for job in alive:
            job.kill()


def pipeline_options(runner: str = RUNNER) -> dict:
    """The job's arguments (the operator adds --runner): the partition, then the runner's options."""
    options = {"input": INPUT, "output": OUTPUT, "models": MODELS, "date": DATE,
               "skip-if-done": True}  # True is rendered as a bare --skip-if-done
    if runner == "DataflowRunner":
        flags = job_args("gpu", project=PROJECT, region=REGION, bucket=BUCKET, date=DATE, image=IMAGE)
        # runner comes from the operator; project, region and job_name from dataflow_config
        options.update({key: value for key, value in as_options_dict(flags).items()
                        if key not in ("runner", "project", "region", "job_name")})
    return options


def dataflow_config(runner: str = RUNNER) -> dict | None:
    """A dict, not a DataflowConfiguration: the operator renders every string of the dict, while a
    DataflowConfiguration renders only some of its fields (project_id stayed a template)."""
    if runner != "DataflowRunner":
        return None
    return {
        "job_name": job_name(DATE, "gpu"),
        "append_job_name": False,  # one name per date: a duplicate launch is refused while one runs
        "project_id": PROJECT,
        "location": REGION,
        "wait_until_finished": True,
    }


with DAG(
    dag_id="label_corpus_daily",
    description="Label the day's posts with the four classifiers (Dataflow GPU workers or the DirectRunner)",
    tags=["labeling", "dataflow" if RUNNER == "DataflowRunner" else "local"],
    **DAILY,
) as dag:
    label = LabelPartitionOperator(
        task_id="label_partition",
        runner=RUNNER,
        py_interpreter=PYTHON,  # the Python this package is installed in, not the first python3 on PATH
        py_file="pipelines.label_corpus",
        py_options=["-m"],  # python -m pipelines.label_corpus --input=... --date=... --skip-if-done ...
        pipeline_options=pipeline_options(),
        dataflow_config=dataflow_config(),
    )
    label >> report_task()
