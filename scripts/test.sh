#!/usr/bin/env bash
# Installs p2pnode and runs every check: lint, types, vectors, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/ruff check p2pnode tests conformance bench
.venv/bin/mypy
.venv/bin/python -m pytest -p no:cacheprovider "$@"
