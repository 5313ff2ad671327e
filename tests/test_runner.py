"""pipelines.runner.Runner: what Beam's own arguments say about a run, read once."""
import os

import pytest

from pipelines.runner import Runner


@pytest.mark.parametrize("args, processes", [
    ([], 1), (["--direct_num_workers=3"], 1),  # in memory: one process, whose counts are the job's
    (["--direct_running_mode=multi_threading", "--direct_num_workers=4"], 1),  # threads of one process
    (["--direct_running_mode=multi_processing", "--direct_num_workers", "2"], 2),
    (["--direct_running_mode=multi_processing", "--direct_num_workers=0"], os.cpu_count()),  # Beam: one a core
    (["--runner=DataflowRunner"], 0)])  # not known here
def test_progress_counts_are_shared_by_the_processes_of_the_direct_runner(args, processes):
    assert Runner.from_args(args).worker_processes == processes


def test_the_cost_is_charged_for_dataflows_workers_and_one_machine_elsewhere():
    assert Runner.from_args(["--runner=DataflowRunner", "--num_workers=4", "--max_num_workers=10"]).cost_workers == 10
    assert Runner.from_args(["--runner=DataflowRunner", "--num_workers=4"]).cost_workers == 4
    assert Runner.from_args(["--runner=DataflowRunner"]).cost_workers == 1
    assert Runner.from_args(["--direct_num_workers=8"]).cost_workers == 1


def test_only_an_in_memory_or_threaded_direct_runner_runs_in_this_process():
    assert Runner.from_args([]).in_this_process
    assert Runner.from_args(["--runner=DirectRunner", "--direct_running_mode=multi_threading"]).in_this_process
    assert not Runner.from_args(["--direct_running_mode=multi_processing"]).in_this_process
    assert not Runner.from_args(["--runner=DataflowRunner"]).in_this_process


def test_the_direct_runner_runs_on_the_fn_api_runner_with_the_options_given():
    from apache_beam.options.pipeline_options import DirectOptions
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    pipeline = Runner.from_args(["--direct_num_workers=2"]).make_pipeline()
    assert isinstance(pipeline.runner, FnApiRunner)  # not Beam's Prism download
    assert pipeline.options.view_as(DirectOptions).direct_num_workers == 2


def test_the_first_worker_is_awaited_by_default_only_where_the_job_service_runs_in_this_process():
    from pipelines.runner import WORKER_START_TIMEOUT_S

    embedded = Runner.from_args(["--runner=PortableRunner", "--job_endpoint=embed"])
    assert embedded.embedded_job_service and embedded.worker_start_timeout(None) == WORKER_START_TIMEOUT_S
    assert (embedded.worker_start_timeout(5), embedded.worker_start_timeout(0)) == (5, 0)  # as given; 0: none
    for args in (["--runner=DataflowRunner"], ["--runner=PortableRunner", "--job_endpoint=localhost:8099"], []):
        assert not Runner.from_args(args).embedded_job_service and Runner.from_args(args).worker_start_timeout(None) == 0
    assert Runner.from_args(["--runner=DataflowRunner"]).worker_start_timeout(1800) == 1800
