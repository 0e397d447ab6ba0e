#!/usr/bin/env bash
# Install what is missing, and only that: Debian packages through apt (when absent) and the
# Python environment through uv (from the committed lockfile). Safe to run again.
#   scripts/bootstrap.sh run    what `make run` needs
#   scripts/bootstrap.sh test   what `make test` needs as well
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-run}

run_pkgs=(ffmpeg clamav-daemon python3-venv ca-certificates)
test_pkgs=(postgresql chromium clamav-testfiles procps haproxy)
pkgs=("${run_pkgs[@]}")
[ "$mode" = test ] && pkgs+=("${test_pkgs[@]}")

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing Debian packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The Debian clamav-daemon package starts its own clamd and freshclam services on some
# machines; Exhibit runs its own clamd with its own configuration, so those are not needed.

# uv: from PATH, or installed into .tools/ (never a curl | sh).
UV=$(command -v uv || true)
if [ -z "$UV" ]; then
  if [ ! -x .tools/bin/uv ]; then
    echo "bootstrap: installing uv into .tools/"
    python3 -m venv .tools
    .tools/bin/pip install -q uv
  fi
  UV=.tools/bin/uv
fi
PY=$(command -v python3.11 || command -v python3)
export UV_PYTHON_DOWNLOADS=never
# --compile-bytecode: the .pyc files made once here. Where PYTHONDONTWRITEBYTECODE is set
# (as on the CI machine) Python would otherwise compile every imported module again in
# every process: seconds of CPU for each `exhibit` process a test or a node starts.
if [ "$mode" = test ]; then
  "$UV" sync --frozen --compile-bytecode --python "$PY" -q
else
  "$UV" sync --frozen --no-dev --compile-bytecode --python "$PY" -q
fi
