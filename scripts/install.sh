#!/usr/bin/env bash
# Installs p2pnode with its test tools into ./.venv (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
# py-libp2p depends on fastecdsa, which compiles against GMP.
if ! { [ -f /usr/include/gmp.h ] || ls /usr/include/*/gmp.h >/dev/null 2>&1; }; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq libgmp-dev gcc >/dev/null
  else
    echo "p2pnode needs the GMP headers to build fastecdsa: install libgmp-dev (Debian/Ubuntu) or gmp-devel" >&2
    exit 1
  fi
fi
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'
# The chain tests build the contract with the npm solc and run anvil, a real Ethereum
# JSON-RPC node from npm: Node.js and npm are needed.
if ! command -v npm >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
  else
    echo "p2pnode's chain tests need Node.js and npm: install nodejs and npm" >&2
    exit 1
  fi
fi
[ -x .anvil/node_modules/.bin/anvil ] || npm install --prefix .anvil --no-audit --no-fund --silent @foundry-rs/anvil@1.7.1 >/dev/null
