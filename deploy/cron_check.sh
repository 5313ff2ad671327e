#!/usr/bin/env bash
# Run the crontab.example line once, as cron would run it (bash, cron's bare environment, the
# line's own `cd`), for one date and with your paths, and say what its exit code means to a cron
# wrapper (healthchecks, cronitor, chronic, a MAILTO on failure).
#
#   ROOT=/srv/labeling PYTHON=/srv/labeling/.venv/bin/python MODELS=/srv/checkpoints/models.json \
#   DATA=/data LOG=/var/log/label_corpus.log WORKERS=4  deploy/cron_check.sh [YYYY-MM-DD]
#
# Without a date the line's own `date -u -d yesterday` decides, as at 02:30 UTC. Each variable
# replaces the path of crontab.example it names (defaults: this checkout, its .venv, the
# example's paths); DRY_RUN=1 prints the command instead of running it.
# Exit code: the line's (0 labeled and reported, or already complete: --skip-if-done; 2 refused:
# bad flags or models file, checkpoints that fail validation, counts that do not reconcile,
# another run holding the partition; 3 written but suspect: no records, or too many dead letters
# (the partition is flagged and a --skip-if-done run labels it again); anything
# else: a crash, see the log).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=${ROOT:-$(dirname "$HERE")}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
MODELS=${MODELS:-/srv/checkpoints/models.json}
DATA=${DATA:-/data}
LOG=${LOG:-/var/log/label_corpus.log}
WORKERS=${WORKERS:-4}
DAY=${1:-}

# The one command line of crontab.example (not a comment, not a VAR=value line): its 6th field on.
LINE=$(grep -vE '^[[:space:]]*(#|$)|^[A-Z_]+=' "$HERE/crontab.example")
[[ $(wc -l <<<"$LINE") -eq 1 ]] || { echo "$0: crontab.example must hold exactly one command line" >&2; exit 1; }
CMD=$(sed -E 's/^([^ ]+ +){5}//' <<<"$LINE")
CMD=${CMD//\\%/%}   # in a crontab, \% is a literal %
CMD=${CMD//\/srv\/labeling/$ROOT}
CMD=${CMD//.venv\/bin\/python/$PYTHON}
CMD=${CMD//\/srv\/checkpoints\/models.json/$MODELS}
CMD=${CMD//\/var\/log\/label_corpus.log/$LOG}
CMD=${CMD//--direct_num_workers=4/--direct_num_workers=$WORKERS}
CMD=${CMD//\'\/data\//\'$DATA/}
CMD=${CMD//\"\/data\//\"$DATA/}
if [[ -n $DAY ]]; then
  [[ $DAY =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}$ ]] || { echo "$0: date must be YYYY-MM-DD, not $DAY" >&2; exit 1; }
  CMD=${CMD//\$(date -u -d yesterday +%F)/$DAY}
fi
if [[ ${DRY_RUN:-} == 1 ]]; then
  printf '%s\n' "$CMD"
  exit 0
fi

# cron's environment: SHELL and CRON_TZ from the file, HOME and LOGNAME of the user, a bare PATH.
set +e
env -i SHELL=/bin/bash HOME="${HOME:-/root}" LOGNAME="${LOGNAME:-$(id -un)}" PATH=/usr/bin:/bin TZ=UTC \
  /bin/bash -c "$CMD"
CODE=$?
set -e
case $CODE in
  0) WHAT="labeled and reported (or already complete: --skip-if-done)" ;;
  2) WHAT="refused: usage, models file, checkpoints, reconciliation or another run on the partition" ;;
  3) WHAT="written but suspect (no records, or dead letters over --max-dead-letter-share): see the log" ;;
  *) WHAT="crashed" ;;
esac
echo "cron_check: exit $CODE: $WHAT (log: $LOG)" >&2
exit $CODE
