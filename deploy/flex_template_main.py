"""Entry point of the Dataflow Flex Template (deploy/Dockerfile.launcher, flex_template_metadata.json).

The Flex Template launcher runs this file with the template's parameters as --name=value plus the
options gcloud or the Airflow operator set (--project, --region, --temp_location, --job_name, ...).
It adds the GPU workers' options from dataflow_flags.py (the worker image is this image:
LABEL_CORPUS_IMAGE, set at build time) and --no-wait: the launcher submits the job and exits,
and the job commits its own partition as its last step.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import dataflow_flags  # noqa: E402

TRUE = ("true", "1", "yes")


def translate(argv: list[str], image: str) -> list[str]:
    """Template parameters (--skip_if_done=true, --only=...) -> label_corpus arguments."""
    out = []
    for arg in argv:
        name, _, value = arg.partition("=")
        if name == "--skip_if_done":
            if value.lower() in TRUE:
                out.append("--skip-if-done")
        elif name == "--cost_per_hour":
            out.append(f"--cost-per-hour={value}")
        else:
            out.append(arg)
    return (dataflow_flags.pipeline_args("gpu") + ["--experiments=use_runner_v2"]
            + dataflow_flags.gpu_worker_flags(image) + out + ["--no-wait"])


def main(argv=None) -> int:
    from pipelines import label_corpus

    argv = sys.argv[1:] if argv is None else argv
    return label_corpus.main(translate(argv, os.environ.get("LABEL_CORPUS_IMAGE", "")))


if __name__ == "__main__":
    sys.exit(main())
