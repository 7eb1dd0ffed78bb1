#!/usr/bin/env bash
# The whole test suite: install, lint, type-check, check the import layers, unit tests,
# and end-to-end tests against a real vLLM (CPU build) serving SmolLM2. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
echo "[test] demo model (converted once, about 35 s, then cached)"
.venv/bin/python -m guard.demo.model >/dev/null
echo "[test] ruff"
.venv/bin/ruff check guard tests bench
.venv/bin/ruff format --check guard tests bench
echo "[test] mypy"
.venv/bin/mypy
echo "[test] import contracts (the layers of docs/architecture.md)"
.venv/bin/lint-imports --no-cache
echo "[test] pytest (the e2e tests start one vLLM, about 40 s)"
.venv/bin/python -m pytest -ra "$@"
