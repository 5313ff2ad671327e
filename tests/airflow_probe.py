"""Run by tests/test_airflow.py with the Python of .venv-airflow (the real Airflow), never imported
by the product's tests: what Airflow itself makes of the DAG files, printed as one JSON object.

    python tests/airflow_probe.py < requests.json     (see answer(); one Airflow start for all)

parse: every DAG file of the DAGs folder through DagBag (import errors, DAG ids, tasks, retries).
render: every task's template fields as Airflow renders them for a run of that DAG: a run made by
hand for a logical date, or the scheduled run the DAG's timetable starts at a moment, created in the
database as the scheduler creates it. Needs the DAGs serialized (`airflow dags reserialize`).
"""
from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timedelta


def dag_bag():
    """The DAGs folder parsed as the DAG processor parses it: a bundle's folder, put on sys.path
    (so a DAG file imports its neighbours, as deploy/README.md has them copied)."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag

    bundle = DagBundlesManager().get_bundle("dags-folder")
    bundle.initialize()
    return BundleDagBag(dag_folder=bundle.path, bundle_path=bundle.path, bundle_name=bundle.name)


def parse() -> dict:
    bag = dag_bag()
    return {
        "import_errors": {path: str(error) for path, error in bag.import_errors.items()},
        "dags": {dag_id: {"tasks": {task.task_id: {"retries": task.retries,
                                                   "retry_delay_s": task.retry_delay.total_seconds(),
                                                   "execution_timeout_s": task.execution_timeout.total_seconds()
                                                   if task.execution_timeout else None,
                                                   "downstream": sorted(task.downstream_task_ids),
                                                   "operator": [cls.__name__ for cls in type(task).__mro__]}
                                    for task in dag.tasks},
                          "schedule": dag.timetable.summary}
                 for dag_id, dag in bag.dags.items()},
    }


def scheduled_run(dag, at: datetime) -> str:
    """The run the scheduler creates at `at` (the timetable's next run after the one a day before,
    created as SchedulerJobRunner does); its run_id."""
    from airflow.timetables.base import DagRunInfo
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType

    before = DagRunInfo.interval(at - timedelta(days=2), at - timedelta(days=1))
    info = dag.next_dagrun_info(last_automated_run_info=before, restricted=False)
    assert info.run_after == at, f"no run of {dag.dag_id} starts at {at} (next: {info.run_after})"
    run_id = dag.timetable.generate_run_id(run_type=DagRunType.SCHEDULED, run_after=info.run_after,
                                           data_interval=info.data_interval)
    with create_session() as session:
        dag.create_dagrun(run_id=run_id, logical_date=info.logical_date, data_interval=info.data_interval,
                          run_after=info.run_after, run_type=DagRunType.SCHEDULED,
                          triggered_by=DagRunTriggeredByType.TIMETABLE, state=DagRunState.QUEUED, session=session)
    return run_id


def render(dag_id: str, logical_date: str | None, scheduled_at: str | None) -> dict:
    """What `airflow tasks render` does (airflow.cli.commands.task_command.task_render), for every
    task, as JSON."""
    from airflow.cli.commands.task_command import _get_template_context, _get_ti
    from airflow.serialization.serialized_objects import DagSerialization

    sdk_dag = dag_bag().dags[dag_id]
    scheduler_dag = DagSerialization.from_dict(DagSerialization.to_dict(sdk_dag))
    run = scheduled_run(scheduler_dag, datetime.fromisoformat(scheduled_at)) if scheduled_at else logical_date
    rendered, dag_run = {}, None
    for task in sdk_dag.tasks:
        ti, _ = _get_ti(scheduler_dag.get_task(task_id=task.task_id), -1, logical_date_or_run_id=run,
                        create_if_necessary="memory")
        dag_run = ti.dag_run
        context = _get_template_context(ti, task)
        task.render_template_fields(context)
        rendered[task.task_id] = {field: _plain(getattr(context["task"], field)) for field in task.template_fields}
        rendered[task.task_id]["py_interpreter"] = getattr(task, "py_interpreter", None)
        rendered[task.task_id]["py_options"] = getattr(task, "py_options", None)
        if "pipeline_options" in task.template_fields:  # the job's arguments, as the Beam provider builds them
            from airflow.providers.apache.beam.hooks.beam import beam_options_to_args

            rendered[task.task_id]["args"] = [f"--runner={task.runner}",
                                              *beam_options_to_args(task.pipeline_options)]
    return {"run_type": str(dag_run.run_type), "logical_date": dag_run.logical_date.isoformat(),
            "data_interval": [dag_run.data_interval_start.isoformat(), dag_run.data_interval_end.isoformat()],
            "run_after": dag_run.run_after.isoformat(), "tasks": rendered}


def _plain(value):
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return repr(value)


def answer(request: dict) -> dict:
    """One request: {"do": "parse"} or {"do": "render", "dag_id": ..., "logical_date" or
    "scheduled_at": ...}, with the label_corpus_* Variables it names set (as AIRFLOW_VAR_*)."""
    for key in [key for key in os.environ if key.startswith("AIRFLOW_VAR_LABEL_CORPUS_")]:
        del os.environ[key]
    for name, value in request.get("variables", {}).items():
        os.environ[f"AIRFLOW_VAR_LABEL_CORPUS_{name.upper()}"] = str(value)
    for module in ("airflow_common", "dataflow_flags"):  # the DAG files' neighbours, read again
        sys.modules.pop(module, None)
    if request["do"] == "parse":
        return parse()
    return render(request["dag_id"], request.get("logical_date"), request.get("scheduled_at"))


def main() -> int:
    """Requests as a JSON list on stdin; the answers as a JSON list, the last line of stdout."""
    answers = [answer(request) for request in json.load(sys.stdin)]
    print(json.dumps(answers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
