#!/usr/bin/env bash
# Offline checks of deploy/: every plain manifest and the rendered Helm chart
# validated against the Kubernetes schemas (kubernetes-validate --strict), the
# chart linted by Helm's own SDK, compose.yaml and the Dockerfile checked for
# structure. Needs no cluster, no docker and no network once .venv-deploy exists.
#   deploy/check.sh            (or: make deploy-check)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${DEPLOY_VENV:-.venv-deploy}
PYTHON=${PYTHON:-python3}
STAMP=$VENV/.installed
if [[ ! -f $STAMP || deploy/requirements-check.txt -nt $STAMP ]]; then
  test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet -r deploy/requirements-check.txt
  touch "$STAMP"
fi
exec "$VENV/bin/python" deploy/check.py "$@"
