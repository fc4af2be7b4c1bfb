#!/usr/bin/env bash
# Builds the reward contract's artifact, p2pnode/chain/contracts/RewardAnchor.json, with the
# pinned solc-js (installed into .solc/ with npm; needs node and npm). Idempotent.
#   bash scripts/build-contract.sh [output.json]
set -euo pipefail
OUT=${1:-}
case $OUT in "" | /*) ;; *) OUT="$PWD/$OUT" ;; esac
cd "$(dirname "$0")/.."
SOLC_VERSION=0.8.28
SRC=p2pnode/chain/contracts/RewardAnchor.sol
OUT=${OUT:-p2pnode/chain/contracts/RewardAnchor.json}
installed=$(node -p "require('./.solc/node_modules/solc/package.json').version" 2>/dev/null || true)
if [ "$installed" != "$SOLC_VERSION" ]; then
  npm install --prefix .solc --no-save --no-audit --no-fund --silent "solc@$SOLC_VERSION" >/dev/null
fi
node scripts/compile-contract.js "$SOLC_VERSION" "$SRC" "$OUT"
