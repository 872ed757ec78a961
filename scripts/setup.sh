#!/usr/bin/env bash
# Installs everything this project needs into ./.venv on a fresh Debian machine (run as root or
# with sudo for the GL libraries). Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

# Headless MuJoCo rendering: EGL (GPU or Mesa), OSMesa as the software fallback.
missing=$(for pkg in libegl1 libgl1 libosmesa6; do dpkg -s "$pkg" >/dev/null 2>&1 || echo "$pkg"; done)
if [ -n "$missing" ]; then
  SUDO=$([ "$(id -u)" -eq 0 ] && echo "" || echo sudo)
  $SUDO apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
pip=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
# torch first and pinned: 2.13.0 has a CPU wheel on these machines; an unpinned torch pulls a
# multi-GB CUDA build.
"${pip[@]}" torch==2.13.0
# The framework, its bundles and the test tools.
"${pip[@]}" -e ".[test]" -e plugins/moto -e plugins/baselines
# mbrl-lib without its dependencies: its metadata pins gymnasium 0.26, hydra-core 1.0 and
# omegaconf<2.1, which clash with metaworld 3. Its models, planners and replay work with the
# versions above (tests/test_mbrl_parts.py proves the parts we use).
"${pip[@]}" --no-deps mbrl==0.2.0
