"""Beam's external worker pool on 127.0.0.1 only, for tests/test_portable_runner.py.

`python -m apache_beam.runners.worker.worker_pool_main --service_port N` binds every interface
('[::]:N'); this serves the same servicer (BeamFnExternalWorkerPoolServicer, use_process=True: each
worker a `python` process from PATH, as the module's main starts it) on 127.0.0.1 at a free port,
prints the port, and on SIGTERM stops its workers and exits.
"""
import atexit
import signal
import sys
from concurrent import futures

import grpc
from apache_beam.portability.api import beam_fn_api_pb2_grpc
from apache_beam.runners.worker.worker_pool_main import BeamFnExternalWorkerPoolServicer, kill_process_gracefully


def main() -> None:
    pool = BeamFnExternalWorkerPoolServicer(use_process=True)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(pool, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    atexit.register(lambda: [kill_process_gracefully(worker) for worker in pool._worker_processes.values()])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # so that atexit stops the workers
    print(port, flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
