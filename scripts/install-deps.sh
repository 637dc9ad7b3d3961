#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# scripts/install-deps.sh [--test] - install the Debian packages dmarcpipe needs
# to build and run (libraries, the PostgreSQL server for the embedded cluster,
# the Public Suffix List). --test adds what only the test suite needs: Dovecot
# (a real IMAP server for tests/e2e/imap_dovecot.sh), Chromium (renders the
# HTML report) and clang with libFuzzer. Runs apt-get as root, or through sudo.
set -euo pipefail
PKGS=(build-essential cmake pkg-config
      libxml2-dev libuv1-dev zlib1g-dev libzip-dev libpq-dev libpsl-dev libidn2-dev publicsuffix
      libcurl4-openssl-dev postgresql postgresql-client)
if [ "${1:-}" = --test ]; then
  PKGS+=(python3 time dovecot-imapd chromium clang libclang-rt-14-dev)
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "install-deps: not root and no sudo; install yourself: ${PKGS[*]}" >&2; exit 1; fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${PKGS[@]}" >/dev/null
