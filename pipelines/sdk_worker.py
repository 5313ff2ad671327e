"""A worker process of the DirectRunner's multi_processing mode: Beam's own SDK worker
(apache_beam.runners.worker.sdk_worker_main), started with the job's console set up first
(pipelines.console.setup_worker), so that it prints what one process does: our progress lines,
no Beam INFO lines, no import-time warnings, no model-loading bars. pipelines/runner.py starts
the workers with `python -m pipelines.sdk_worker [-v]` instead of Beam's module.
"""
import sys

from pipelines import console  # first: before Beam's import-time warning

console.setup_worker(verbose=console.wants_verbose(sys.argv[1:]))

from apache_beam.runners.worker import sdk_worker_main  # noqa: E402 - after the console, on purpose

if __name__ == "__main__":
    sdk_worker_main.main(sys.argv)
