#!/usr/bin/env bash
# Installs p2pnode and runs a local testnet of 5 real nodes on 127.0.0.1 (the main job).
# Extra arguments go to `p2pnode testnet up`, e.g. `bash scripts/testnet.sh -n 8 --json`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
if [ "$#" -eq 0 ]; then set -- -n 5 --jobs 40 --epoch-len 20 --duration 180; fi
exec .venv/bin/p2pnode testnet up "$@"
