#!/usr/bin/env bash
# Launch the labeling pipeline on Dataflow for one date partition.
#
#   PROJECT=my-project REGION=us-central1 BUCKET=my-bucket \
#   IMAGE=us-central1-docker.pkg.dev/my-project/labeling/label-corpus:0.1.0 \
#     deploy/launch_dataflow.sh gpu 2024-05-01
#
#   PROJECT=... REGION=... BUCKET=... deploy/launch_dataflow.sh cpu 2024-05-01
#
# Environment:
#   PROJECT, REGION, BUCKET   required; BUCKET is a name, without gs://
#   IMAGE                     required for gpu: the image built from deploy/Dockerfile
#   INPUT   (default gs://$BUCKET/posts/date={date}/*.jsonl.gz)   {date} is filled by --date
#   OUTPUT  (default gs://$BUCKET/labels/date={date})
#   MODELS  (default gs://$BUCKET/checkpoints/models.json)  a models.json naming each classifier's
#           checkpoint (gs:// prefixes, hub ids, or /opt/checkpoints/... when they are baked
#           into the image and this script runs inside it: see deploy/README.md)
#   MAX_WORKERS (default 10), PYTHON (default python)
#   DRY_RUN=1   print the command, one argument per line, instead of running it
# Further arguments are passed on to the pipeline (e.g. --only politics,emotion --keep-fields lang).
set -euo pipefail

usage() { echo "usage: $0 {gpu|cpu} YYYY-MM-DD [pipeline args...]" >&2; exit 2; }
[[ $# -ge 2 ]] || usage
KIND=$1; DATE=$2; shift 2
[[ $KIND == gpu || $KIND == cpu ]] || usage
: "${PROJECT:?set PROJECT}" "${REGION:?set REGION}" "${BUCKET:?set BUCKET}"
if [[ $KIND == gpu ]]; then : "${IMAGE:?set IMAGE to the custom SDK container (deploy/Dockerfile)}"; fi

cd "$(dirname "$0")/.."   # the repository root: --setup_file ./setup.py and the packages are here
PYTHON=${PYTHON:-python}
# ({date} inside ${VAR:-...} would end the expansion at its brace: defaults go through variables.)
DEFAULT_INPUT="gs://$BUCKET/posts/date={date}/*.jsonl.gz"
DEFAULT_OUTPUT="gs://$BUCKET/labels/date={date}"
INPUT=${INPUT:-$DEFAULT_INPUT}
OUTPUT=${OUTPUT:-$DEFAULT_OUTPUT}
MODELS=${MODELS:-gs://$BUCKET/checkpoints/models.json}

mapfile -t FLAGS < <("$PYTHON" deploy/dataflow_flags.py "$KIND" --project "$PROJECT" --region "$REGION" \
  --bucket "$BUCKET" --date "$DATE" --image "${IMAGE:-}" --max-workers "${MAX_WORKERS:-10}")
[[ ${#FLAGS[@]} -gt 0 ]] || { echo "$0: deploy/dataflow_flags.py gave no flags" >&2; exit 1; }

CMD=("$PYTHON" -m pipelines.label_corpus --input "$INPUT" --output "$OUTPUT" --models "$MODELS"
     --date "$DATE" --skip-if-done "${FLAGS[@]}" "$@")
if [[ ${DRY_RUN:-} == 1 ]]; then
  printf '%s\n' "${CMD[@]}"
  exit 0
fi
exec "${CMD[@]}"
