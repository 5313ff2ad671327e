"""The command-line flags of a Dataflow job for the labeling pipeline, in one place.

GPU workers run our custom SDK container (deploy/Dockerfile) on g2 machines with one
NVIDIA L4 each; CPU workers run Beam's standard container and install this package from
--setup_file. launch_dataflow.sh, the Airflow DAG and tests/test_deploy.py all take the
flags from here, so what is tested is what is launched.

    python deploy/dataflow_flags.py {gpu,cpu} --project P --region R --bucket B --date D [--image IMAGE]

prints one argument per line (pipeline arguments, then Beam options). Standard library only.
"""
from __future__ import annotations

import argparse
import sys

# One L4 per VM; Dataflow installs the NVIDIA driver. Semicolons, not commas: Beam splits
# --dataflow_service_options on commas.
GPU_ACCELERATOR = "worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver"
# g2-standard-8: 8 vCPU, 32 GB RAM, one L4 (24 GB). Beam starts one SDK process per vCPU;
# the models are loaded once per VM (see MODEL_SHARING) so 8 processes share one GPU.
GPU_MACHINE_TYPE = "g2-standard-8"
# The CUDA PyTorch image is ~10 GB unpacked, plus checkpoints if baked (~2.5 GB for the
# four published models): 50 GB leaves room for Beam's shuffle spill and logs.
GPU_DISK_GB = 50
CPU_MACHINE_TYPE = "n2-highmem-8"  # 8 SDK processes x ~3 GB of fp32 models each fit in 64 GB
CPU_DISK_GB = 50
DEFAULT_MAX_WORKERS = 10
MODEL_SHARING = (
    "ClassifiersHandler passes large_model=True to Beam's ModelHandler on CUDA: RunInference then "
    "loads the classifiers once per VM in a shared process that every SDK process of the VM calls, "
    "instead of once per SDK process (8 copies of roberta-large would not fit next to each other "
    "on one L4). On CPU each SDK process loads its own copy."
)


def job_name(date: str, kind: str) -> str:
    """A Dataflow job name ([a-z]([-a-z0-9]*[a-z0-9])?): one per date and kind."""
    return f"label-corpus-{kind}-{date}".lower().replace("_", "-")


def pipeline_args(kind: str) -> list[str]:
    """label_corpus arguments that belong to the worker kind (not Beam options)."""
    if kind == "gpu":
        return ["--device=cuda", "--batch-size=1024"]
    return ["--device=cpu", "--batch-size=256"]


def common_flags(*, project: str, region: str, bucket: str, date: str, kind: str,
                 max_workers: int = DEFAULT_MAX_WORKERS) -> list[str]:
    return [
        "--runner=DataflowRunner",
        f"--project={project}",
        f"--region={region}",
        f"--temp_location=gs://{bucket}/dataflow/temp",
        f"--staging_location=gs://{bucket}/dataflow/staging",
        f"--job_name={job_name(date, kind)}",
        f"--max_num_workers={max_workers}",
        "--autoscaling_algorithm=THROUGHPUT_BASED",
        "--experiments=use_runner_v2",  # Runner v2: needed for custom containers and GPUs
    ]


def gpu_flags(*, project: str, region: str, bucket: str, date: str, image: str,
              max_workers: int = DEFAULT_MAX_WORKERS) -> list[str]:
    """Beam options of a GPU job on our custom container."""
    return common_flags(project=project, region=region, bucket=bucket, date=date, kind="gpu",
                        max_workers=max_workers) + gpu_worker_flags(image)


def gpu_worker_flags(image: str) -> list[str]:
    """The GPU workers' part of the options (a Flex Template launch gets the rest from gcloud)."""
    if not image:
        raise ValueError("a GPU job needs --image: the custom SDK container built from deploy/Dockerfile")
    return [
        f"--sdk_container_image={image}",
        "--sdk_location=container",  # the Beam SDK inside the image; nothing staged
        f"--dataflow_service_options={GPU_ACCELERATOR}",
        f"--machine_type={GPU_MACHINE_TYPE}",
        f"--disk_size_gb={GPU_DISK_GB}",
    ]


def cpu_flags(*, project: str, region: str, bucket: str, date: str, setup_file: str = "./setup.py",
              max_workers: int = DEFAULT_MAX_WORKERS) -> list[str]:
    """Beam options of a CPU job on Beam's standard container; workers pip-install setup.py."""
    return common_flags(project=project, region=region, bucket=bucket, date=date, kind="cpu",
                        max_workers=max_workers) + [
        f"--setup_file={setup_file}",
        f"--machine_type={CPU_MACHINE_TYPE}",
        f"--disk_size_gb={CPU_DISK_GB}",
    ]


def job_args(kind: str, **kwargs) -> list[str]:
    """Everything after `python -m pipelines.label_corpus --input ... --output ...`."""
    if kind == "gpu":
        return pipeline_args("gpu") + gpu_flags(**kwargs)
    if kind == "cpu":
        kwargs.pop("image", None)
        return pipeline_args("cpu") + cpu_flags(**kwargs)
    raise ValueError(f"kind must be gpu or cpu, not {kind!r}")


def as_options_dict(flags: list[str]) -> dict:
    """['--k=v', ...] -> {'k': 'v'}, for operators that take options as a dict (Airflow's Beam
    operator turns each item back into --k=v). Repeated flags become lists."""
    options: dict = {}
    for flag in flags:
        if not flag.startswith("--") or "=" not in flag:
            raise ValueError(f"expected --name=value, got {flag!r}")
        key, value = flag[2:].split("=", 1)
        if key in options:
            previous = options[key]
            options[key] = (previous if isinstance(previous, list) else [previous]) + [value]
        else:
            options[key] = value
    return options


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=("gpu", "cpu"))
    parser.add_argument("--project", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--bucket", required=True, help="bucket name for temp and staging files (no gs://)")
    parser.add_argument("--date", required=True)
    parser.add_argument("--image", default="", help="custom SDK container (gpu)")
    parser.add_argument("--max-workers", type=int, default=DEFAULT_MAX_WORKERS)
    args = parser.parse_args(argv)
    try:
        flags = job_args(args.kind, project=args.project, region=args.region, bucket=args.bucket,
                         date=args.date, image=args.image, max_workers=args.max_workers)
    except ValueError as exc:
        print(f"dataflow_flags: {exc}", file=sys.stderr)
        return 2
    print("\n".join(flags))
    return 0


if __name__ == "__main__":
    sys.exit(main())
