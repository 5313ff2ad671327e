"""What Beam's own options (a run's beam_args) say about where and how the labeling pipeline
runs, parsed once into a Runner that the run then hands down (pipelines/labeling.py)."""
from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from typing import Sequence

from pipelines import console  # first: it keeps Beam's import-time warnings off the terminal
import apache_beam as beam
from apache_beam.options.pipeline_options import (DirectOptions, PipelineOptions, PortableOptions, StandardOptions,
                                                  WorkerOptions)
from apache_beam.portability import python_urns
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.runners.runner import PipelineState

DIRECT_RUNNER_NAMES = (None, "DirectRunner", "direct")  # --runner values (or none) that mean the DirectRunner
# How long a launcher waits for the first worker of a job whose job service runs in this process
# (--runner PortableRunner --job_endpoint embed): such a worker starts in seconds, and one that
# cannot start (a worker pool whose Python lacks this project or Beam) leaves no trace the
# launcher could see but this silence. Elsewhere (Dataflow: VMs boot, --setup_file installs) no
# deadline unless --worker-start-timeout sets one.
WORKER_START_TIMEOUT_S = 120


@dataclass(frozen=True)
class Runner:
    """name: --runner as given (None: the DirectRunner); in_this_process: its workers run in this
    process (the DirectRunner in memory or multi-threaded), so they can take the models
    validation loaded; worker_processes: the processes that share the work, each counting only its
    own progress: 1 in this process (in memory or threads), --direct_num_workers with
    multi_processing (0: one per core, as Beam does), 0 where it is not known (a remote runner's);
    cost_workers: the workers the cost is charged for; options: the PipelineOptions themselves."""

    name: str | None
    in_this_process: bool
    worker_processes: int
    cost_workers: int
    options: PipelineOptions

    @classmethod
    def from_args(cls, beam_args: Sequence[str]) -> "Runner":
        options = PipelineOptions(list(beam_args))
        name = options.view_as(StandardOptions).runner
        direct = name in DIRECT_RUNNER_NAMES
        in_this_process = direct and options.view_as(DirectOptions).direct_running_mode != "multi_processing"
        if in_this_process:
            processes = 1
        elif direct:
            processes = options.view_as(DirectOptions).direct_num_workers or os.cpu_count() or 1
        else:
            processes = 0
        return cls(name=name,
                   in_this_process=in_this_process,
                   worker_processes=processes,
                   cost_workers=_cost_workers(options, name),
                   options=options)

    @property
    def direct(self) -> bool:
        return self.name in DIRECT_RUNNER_NAMES

    @property
    def embedded_job_service(self) -> bool:
        """The PortableRunner with its job service in this process (--job_endpoint embed): the
        workers are this machine's processes (--environment_type) or a worker pool's."""
        return "PortableRunner" in str(self.name) and self.options.view_as(PortableOptions).job_endpoint == "embed"

    def worker_start_timeout(self, given: float | None) -> float:
        """Seconds to wait for the first worker (0: no deadline): `given` (--worker-start-timeout),
        else WORKER_START_TIMEOUT_S where the job service runs in this process, else none."""
        if given is not None:
            return given
        return WORKER_START_TIMEOUT_S if self.embedded_job_service else 0

    def make_pipeline(self) -> beam.Pipeline:
        """A Beam pipeline for these options. The DirectRunner (the default) runs on Beam's
        FnApiRunner, in memory or with --direct_num_workers processes; we skip its attempt to
        download the Prism runner, which fails on machines without internet access."""
        if self.direct:
            return beam.Pipeline(runner=QuietWorkersRunner(), options=self.options)
        return beam.Pipeline(options=self.options)


BEAM_WORKER_COMMAND = f"{sys.executable} -m apache_beam.runners.worker.sdk_worker_main"  # what FnApiRunner starts


def worker_command(verbose: bool) -> str:
    """How a multi_processing worker starts: Beam's worker with the job's console (pipelines/sdk_worker.py)."""
    return f"{shlex.quote(sys.executable)} -m pipelines.sdk_worker{' -v' if verbose else ''}"


class QuietWorkersRunner(FnApiRunner):
    """Beam's FnApiRunner, whose multi_processing worker processes run pipelines/sdk_worker.py
    (quiet as this process, each with its own progress lines; -v shows everything) instead of
    Beam's bare worker module (every INFO line and import warning of each worker on stderr): the
    workers' environment in the pipeline is rewritten just before the run. An environment of the
    caller's own is left as it is."""

    def run_via_runner_api(self, pipeline_proto, options):
        for environment in pipeline_proto.components.environments.values():
            if environment.urn == python_urns.SUBPROCESS_SDK and environment.payload.decode() == BEAM_WORKER_COMMAND:
                environment.payload = worker_command(console.is_verbose()).encode()
        return super().run_via_runner_api(pipeline_proto, options)


def _cost_workers(options: PipelineOptions, name: str | None) -> int:
    """Workers the cost is charged for: Dataflow's --max_num_workers (an upper bound under
    autoscaling) or --num_workers; one machine for the DirectRunner."""
    if "Dataflow" not in str(name):
        return 1
    workers = options.view_as(WorkerOptions)
    return workers.max_num_workers or workers.num_workers or 1


def make_pipeline(beam_args: Sequence[str]) -> beam.Pipeline:
    """Runner.make_pipeline, for callers that hold only Beam's arguments (benchmarks, tests)."""
    return Runner.from_args(beam_args).make_pipeline()


def runs_in_this_process(beam_args: Sequence[str]) -> bool:
    """Runner.in_this_process, for callers that hold only Beam's arguments."""
    return Runner.from_args(beam_args).in_this_process


def dies_with_this_process(pipeline: beam.Pipeline) -> bool:
    """Whether the pipeline runs in this process or its children (the DirectRunner's runners):
    said by the pipeline itself, since a caller may hand label() a pipeline of its own."""
    from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner, SwitchingDirectRunner

    return isinstance(pipeline.runner, (FnApiRunner, SwitchingDirectRunner, BundleBasedDirectRunner))


def finished(result) -> bool:
    """Whether a PipelineResult is in a terminal state (False where the runner cannot tell)."""
    try:
        return PipelineState.is_terminal(result.state)
    except Exception:  # noqa: BLE001 - a runner that cannot tell: not known to be finished
        return False
