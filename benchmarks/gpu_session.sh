#!/usr/bin/env bash
# Issue 11 on the GPU machine in one command: the CUDA tests, then the GPU benchmark at --scale real
# on 50,000 real posts. Everything it writes goes under $OUT (4 files: env.txt, gpu-tests.log,
# gpu-bench.log, gpu.json); the table and the targets are the last lines it prints.
#
# Here, once, from the repository root (fills .whl/ and .corpus/, both kept out of git):
#   bash ../shared/tools/device-wheels.sh && bash benchmarks/gpu_session.sh prepare
# Then one `run` call of the device tool with carry [".whl", ".corpus"], timeout_s 600, and the command
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit; bash benchmarks/gpu_session.sh
# Stages: `tests` or `bench` alone, for a second call; N (posts, default 50000), WORKERS (ours' worker
# counts, default 1,4), CONTENDERS (default ours,hf-loop) and SCALE (default real; tiny for a CPU smoke run)
# may be set in the environment.
set -uo pipefail
stage=${1:-all}
corpus=.corpus/social_posts.jsonl.gz

if [ "$stage" = prepare ]; then
  set -e
  exclude=$(git rev-parse --git-path info/exclude)
  grep -qx '/.corpus/' "$exclude" 2>/dev/null || echo '/.corpus/' >> "$exclude"
  mkdir -p .corpus
  cp ../shared/corpora/social_posts.jsonl.gz "$corpus"
  ls .whl/*.whl >/dev/null 2>&1 || echo "no wheels in .whl/: run bash ../shared/tools/device-wheels.sh"
  du -sh .whl .corpus 2>/dev/null
  exit 0
fi

OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export LABEL_CORPUS_BENCH_CACHE=${LABEL_CORPUS_BENCH_CACHE:-/tmp/label_corpus_bench}
{
  date -u; nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
  python3 -c "import torch, transformers, apache_beam; print('torch', torch.__version__, 'cuda', torch.version.cuda,
'transformers', transformers.__version__, 'beam', apache_beam.__version__, torch.cuda.get_device_name(0))"
  nproc; free -g | head -2
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

status=0
if [ "$stage" = all ] || [ "$stage" = tests ]; then
  echo "== CUDA tests (tests/test_gpu.py -m gpu)"
  timeout 240 python3 -m pytest -q -rs -m gpu -p no:cacheprovider tests/test_gpu.py 2>&1 | tee "$OUT/gpu-tests.log"
  status=${PIPESTATUS[0]}
fi
if [ "$stage" = all ] || [ "$stage" = bench ]; then
  [ -f "$corpus" ] || echo "WARNING: $corpus is missing (carry .corpus): the benchmark falls back to generated posts"
  echo "== benchmark (python3 -m benchmarks.gpu --scale ${SCALE:-real} --n ${N:-50000})"
  budget=$(( 575 - SECONDS ))  # what the device run's 600 s leave after the tests
  timeout "$budget" python3 -m benchmarks.gpu --scale "${SCALE:-real}" --n "${N:-50000}" --corpus "$corpus" \
      --workers "${WORKERS:-1,4}" --contenders "${CONTENDERS:-ours,hf-loop}" \
      --json "$OUT/gpu.json" 2>&1 | tee "$OUT/gpu-bench.log"
  bench=${PIPESTATUS[0]}
  if [ "$bench" = 124 ]; then
    echo "the benchmark ran past ${budget}s; what it measured until then:"
    [ -f "$OUT/gpu.json" ] && python3 -m benchmarks.gpu --report "$OUT/gpu.json" 2>&1 | tee -a "$OUT/gpu-bench.log"
  fi
  [ "$status" = 0 ] && status=$bench
fi
exit "$status"
