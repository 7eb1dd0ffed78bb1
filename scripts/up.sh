#!/usr/bin/env bash
# The demo: install what is needed, then run vLLM with SmolLM2 and guard in front of it
# with policies/default.yaml. Point an OpenAI client at http://127.0.0.1:8080/v1.
# Arguments go to `guard up` (e.g. --port 9090). Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
exec .venv/bin/guard up "$@"
