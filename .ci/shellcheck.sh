#!/usr/bin/env bash
# Lint every shell script we ship. Installs shellcheck from apt when missing (CI runs this as root).
set -euo pipefail
cd "$(dirname -- "${BASH_SOURCE[0]}")/.."

if ! command -v shellcheck >/dev/null 2>&1; then
    if [[ $EUID -ne 0 ]]; then
        echo ".ci/shellcheck.sh: shellcheck is not installed; run as root to install it, or: sudo apt-get install -y shellcheck" >&2
        exit 2
    fi
    apt-get update -qq && apt-get install -y -qq shellcheck
fi

shellcheck --version | sed -n '2p'
shopt -s nullglob
shellcheck os.sh .ci/run .ci/*.sh bench/*.sh
echo "shellcheck: ok"
