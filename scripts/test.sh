#!/usr/bin/env bash
# Installs everything the test suite needs on a Debian machine (system packages with apt-get, as root or through
# sudo; Python packages into .venv from the project's own pyproject.toml) and runs the whole suite.
# Usage: bash scripts/test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

# System tools the tests drive: tshark (cross-checks), tcpdump (recording), openssl/nginx/gnutls-cli/curl (real
# servers and clients), faketime (a client with a wrong clock), iptables/iproute2 (network failure scenarios),
# libcap2-bin (capsh: live mode without CAP_NET_RAW).
PACKAGES="tshark tcpdump openssl nginx-light gnutls-bin curl faketime iptables iproute2 procps libcap2-bin"
missing=""
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if ! python3 -m venv --help >/dev/null 2>&1; then missing="$missing python3-venv"; fi
if [ -n "$missing" ]; then
  $SUDO apt-get update -q
  echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections
  $SUDO apt-get install -y -q --no-install-recommends $missing
fi

if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
exec .venv/bin/python -m pytest -q "$@"
