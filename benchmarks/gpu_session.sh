#!/usr/bin/env bash
# The GPU path run and measured in one device call (issues 22, 30): the CUDA tests (tests/test_gpu.py -m gpu,
# at most 3 minutes), then `benchmarks.gpu --scale real` on 20,000 real posts, ours at 1 and 4 worker
# processes; the whole call ends within 9 minutes, the build of the real-shape checkpoints included.
# It writes 4 files under $OUT (env.txt, gpu-tests.log, gpu-bench.log, gpu.json); the table and the
# targets are the last lines it prints. gpu.json is rewritten after each contender, so a call cut short
# keeps what it measured, and the script prints that.
#
# 1. Here, once, from the repository root (fills .whl/ through ../shared/tools/device-wheels.sh, and
#    .corpus/ with the shared corpus; both ignored by git; about 51 MB with the repository):
#      bash benchmarks/gpu_session.sh prepare            # SHARED=/path/to/shared if not ../shared
# 2. Here, before any device minute: the whole session on the CPU, in a throw-away venv holding only
#    what the GPU machine has (benchmarks/gpu_machine.txt) plus .whl/ (10 to 30 minutes here, by the
#    machine's load, and about 10 more the first time, for the venv):
#      bash benchmarks/gpu_session.sh rehearse           # must end with "rehearsal passed"
# 3. The device tool's `status` (can_start_another true), then ONE `run` with carry [".whl", ".corpus"],
#    timeout_s 600, no kind (the default, nvidia-h100-x1: one H100, ~78 GiB, which the four models and
#    their batches fit many times over; nvidia-h200 shares its image and package list, so the same
#    rehearsal holds for both) and the command
#      python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit; bash benchmarks/gpu_session.sh
# 4. give_back unless a second call follows at once. For a second call, the same command with a stage
#    (`tests` or `bench`) after the script's name, and the environment: N (posts, default 20000), WORKERS
#    (ours' worker counts, default 1,4), CONTENDERS (default ours,hf-loop), SCALE (default real),
#    OURS_ARGS (more options for ours, e.g. '--max-tokens-per-batch 131072'), CALL_S (the call's own
#    budget in seconds, default 520) and TESTS_S (the tests' share of it, default 180).
set -uo pipefail
stage=${1:-all}
corpus=.corpus/social_posts.jsonl.gz
shared=${SHARED:-../shared}

if [ "$stage" = prepare ]; then
  set -e
  if ! ls .whl/*.whl >/dev/null 2>&1; then
    # device-wheels.sh writes to ./.git/info/exclude, which a git worktree's .git file has not: run it
    # in a scratch folder and take its .whl/ (.gitignore keeps it out of git here).
    tool=$(realpath "$shared/tools/device-wheels.sh")
    scratch=$(mktemp -d)
    mkdir -p "$scratch/.git/info"
    (cd "$scratch" && bash "$tool")
    mv "$scratch/.whl" .whl
    rm -rf "$scratch"
  fi
  mkdir -p .corpus
  cp "$shared/corpora/social_posts.jsonl.gz" "$corpus"
  for path in .whl .corpus; do git check-ignore -q "$path" || { echo "prepare: $path/ is not ignored by git"; exit 1; }; done
  du -sh .whl .corpus
  exit 0
fi

if [ "$stage" = rehearse ]; then
  # What the device call will meet, on this machine's CPU: a venv of the machine's packages alone (torch's
  # CPU build), .whl/ installed with the device command's own pip line, then this script at SCALE=tiny N=400.
  # The venv is kept for the next rehearsal while benchmarks/gpu_machine.txt and .whl/ stay the same
  # (REHEARSAL_FRESH=1 builds it anew).
  set -e
  ls .whl/*.whl >/dev/null 2>&1 || { echo "rehearse: no wheels in .whl/: bash benchmarks/gpu_session.sh prepare"; exit 1; }
  [ -f "$corpus" ] || { echo "rehearse: no $corpus: bash benchmarks/gpu_session.sh prepare"; exit 1; }
  venv=${REHEARSAL_VENV:-/tmp/gpu-session-rehearsal}
  python=${PYTHON:-python3}
  stamp=$( { cat benchmarks/gpu_machine.txt; ls .whl; "$python" --version; } | sha256sum | cut -c1-16)
  quiet() { { "$@" 2>&1; } | { grep -v "is ignored: it is neither a file nor a directory" || true; }; }
  if [ "${REHEARSAL_FRESH:-0}" = 1 ] || [ "$(cat "$venv/stamp" 2>/dev/null)" != "$stamp" ]; then
    rm -rf "$venv"
    "$python" -m venv "$venv"
    echo "== rehearse: venv $venv ($("$venv/bin/python" --version)) with benchmarks/gpu_machine.txt"
    quiet "$venv/bin/python" -m pip install -q -r benchmarks/gpu_machine.txt
    # .whl/ goes in with --no-deps: what its wheels need must be on the machine (then it goes in here
    # too), or among them.
    needs=$("$venv/bin/python" - .whl/*.whl <<'EOF'
import re, sys, zipfile
from packaging.requirements import Requirement
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
machine = {norm(n) for line in open("benchmarks/gpu_machine.txt") if line.startswith("#:") for n in line[2:].split()}
carried = {norm(path.rsplit("/", 1)[-1].split("-")[0]) for path in sys.argv[1:]}
needs, missing = set(), []
for path in sys.argv[1:]:
    with zipfile.ZipFile(path) as wheel:
        meta = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
        lines = wheel.read(meta).decode().splitlines()
    for line in lines:
        if line.startswith("Requires-Dist:"):
            req = Requirement(line.split(":", 1)[1])
            if (req.marker is None or req.marker.evaluate({"extra": ""})) and norm(req.name) not in carried:
                (needs.add(norm(req.name)) if norm(req.name) in machine else missing.append(f"{req} ({path})"))
if missing:
    sys.exit("rehearse: .whl/ needs what the GPU machine lacks (add it to device-wheels.sh): " + "; ".join(missing))
print(" ".join(sorted(needs)))
EOF
)
    echo "rehearse: what .whl/ needs from the machine: $needs"
    quiet "$venv/bin/python" -m pip install -q -c benchmarks/gpu_machine.txt $needs
    # .whl/ holds the machine's builds (CPython 3.12): a wheel this Python cannot take is fetched for it
    # at the same version (only where the Python here is not 3.12).
    mkdir -p "$venv/wheels"
    for wheel in .whl/*.whl; do
      if "$venv/bin/python" -c "import sys; from packaging.tags import sys_tags; from packaging.utils import parse_wheel_filename as p
sys.exit(not set(p(sys.argv[1].rsplit('/', 1)[-1])[3]) & set(sys_tags()))" "$wheel"; then
        cp "$wheel" "$venv/wheels/"
      else
        quiet "$venv/bin/python" -m pip download -q --no-deps --only-binary=:all: -d "$venv/wheels" \
            "$(basename "$wheel" | cut -d- -f1,2 | sed 's/-/==/')"
      fi
    done
    quiet "$venv/bin/python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$venv/site" "$venv/wheels"/*.whl
    echo "$stamp" > "$venv/stamp"
  else
    echo "== rehearse: venv $venv as built before (REHEARSAL_FRESH=1 builds it anew)"
  fi
  # Nothing beyond the machine's packages and .whl/: what pip's resolution brought that the machine
  # lacks (newer releases' dependencies) is removed, and polars and matplotlib must be absent.
  outside() {
    # -P: the repository root is not on the path, or a checkout installed with `pip install -e .` (its
    # *.egg-info there) would count as a package the venv holds.
    "$venv/bin/python" -P - "$venv/site" "$1" <<'EOF'
import re, sys
from importlib.metadata import distributions
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
machine = {norm(n) for line in open("benchmarks/gpu_machine.txt") if line.startswith("#:") for n in line[2:].split()}
carried = {norm(d.metadata["Name"]) for d in distributions(path=[sys.argv[1]])}
venv = {norm(d.metadata["Name"]) for d in distributions()} - carried
extra = sorted(venv - machine - {"pip", "setuptools", "wheel"})
if sys.argv[2] == "list":
    sys.exit(print(" ".join(extra)))
for name in ("polars", "matplotlib"):
    if name in venv | carried:
        sys.exit(f"rehearse: {name} is in the venv: the job must run without it")
if extra or venv & carried:
    sys.exit(f"rehearse: the venv holds {extra}, which the GPU machine lacks, or {sorted(venv & carried)} twice")
print(f"rehearse: {len(venv)} packages, all on the GPU machine, and {len(carried)} from .whl/")
EOF
  }
  extra=$(outside list)
  if [ -n "$extra" ]; then
    echo "rehearse: removing what pip brought and the GPU machine lacks: $extra"
    "$venv/bin/python" -m pip uninstall -q -y $extra
  fi
  outside check
  set +e
  # No time limits that fit the GPU: the CPU tests and runs here are slower; what is checked is that they pass.
  PATH="$venv/bin:$PATH" PYTHONPATH="$venv/site:$PWD" SCALE=tiny N=${N:-400} GPU_TESTS="" TESTS_S=1200 \
    CALL_S=3600 LABEL_CORPUS_BENCH_CACHE="$venv/checkpoints" OUT=${OUT:-$venv/out} bash "$0" all
  status=$?
  [ "$status" = 0 ] && echo "rehearsal passed" || echo "rehearsal FAILED (exit $status)"
  exit "$status"
fi

OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
call_s=${CALL_S:-520}  # with the pip line before it, the call stays under 9 minutes (the tool allows 600 s)
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export LABEL_CORPUS_BENCH_CACHE=${LABEL_CORPUS_BENCH_CACHE:-/tmp/label_corpus_bench}
{
  date -u; nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
  python3 -c "import torch, transformers, apache_beam, numpy, pyarrow; print('torch', torch.__version__, 'cuda',
torch.version.cuda, 'transformers', transformers.__version__, 'beam', apache_beam.__version__, 'numpy',
numpy.__version__, 'pyarrow', pyarrow.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')"
  nproc; free -g | head -2
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

status=0
if [ "$stage" = all ] || [ "$stage" = tests ]; then
  # GPU_TESTS: the pytest mark (gpu: the CUDA tests alone; empty, as the rehearsal sets it: the CPU ones too)
  mark=${GPU_TESTS-gpu}
  echo "== CUDA tests (pytest tests/test_gpu.py${mark:+ -m $mark}, at most ${TESTS_S:-180} s)"
  timeout "${TESTS_S:-180}" python3 -m pytest -q -rs ${mark:+-m "$mark"} -p no:cacheprovider tests/test_gpu.py \
      2>&1 | tee "$OUT/gpu-tests.log"
  status=${PIPESTATUS[0]}
  [ "$status" = 124 ] && echo "the tests ran past ${TESTS_S:-180} s" | tee -a "$OUT/gpu-tests.log"
fi
if [ "$stage" = all ] || [ "$stage" = bench ]; then
  [ -f "$corpus" ] || echo "WARNING: $corpus is missing (carry .corpus): the benchmark falls back to generated posts"
  budget=$(( call_s - 10 - SECONDS ))  # 10 s to print what it measured when cut short
  echo "== benchmark (python3 -m benchmarks.gpu --scale ${SCALE:-real} --n ${N:-20000}, at most ${budget} s)"
  timeout "$budget" python3 -m benchmarks.gpu --scale "${SCALE:-real}" --n "${N:-20000}" --corpus "$corpus" \
      --workers "${WORKERS:-1,4}" --contenders "${CONTENDERS:-ours,hf-loop}" --ours-args="${OURS_ARGS:-}" \
      --json "$OUT/gpu.json" 2>&1 | tee "$OUT/gpu-bench.log"
  bench=${PIPESTATUS[0]}
  if [ "$bench" = 124 ]; then
    echo "the benchmark ran past ${budget}s; what it measured until then:"
    [ -f "$OUT/gpu.json" ] && python3 -m benchmarks.gpu --report "$OUT/gpu.json" 2>&1 | tee -a "$OUT/gpu-bench.log"
  fi
  [ "$status" = 0 ] && status=$bench
fi
exit "$status"
