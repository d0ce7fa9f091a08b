#!/bin/sh
# Installs the tools the tests need: Chromium for tests/console (deploy/install-chromium.sh),
# curl and openssl for tests/readme (they run the README's commands as written), then
# promtool for tests/deploy (Debian/Ubuntu package `prometheus`).
# `make test` runs this first. As root it installs what is missing; otherwise it says what
# to run and fails, so the tests never silently skip.
set -eu

sh "$(dirname "$0")/install-chromium.sh"

missing=""
for tool in curl openssl; do
    command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "install-tools: installing$missing" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        # shellcheck disable=SC2086 # one package per word
        apt-get install -y -qq --no-install-recommends $missing >/dev/null
    else
        echo "install-tools:$missing missing (tests/readme runs the README's commands with them)" >&2
        exit 1
    fi
fi

if command -v promtool >/dev/null 2>&1; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "install-tools: installing promtool (apt package 'prometheus')" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    # The package starts a Prometheus server where a service manager runs; we only want
    # the promtool binary, so stop it if it came up.
    if command -v service >/dev/null 2>&1; then
        service prometheus stop >/dev/null 2>&1 || true
    fi
    command -v promtool >/dev/null 2>&1 && exit 0
    echo "install-tools: apt-get installed 'prometheus' but promtool is not on PATH" >&2
    exit 1
fi

cat >&2 <<'MSG'
install-tools: promtool is missing, and it is needed by tests/deploy.
  Debian/Ubuntu:  sudo apt-get install --no-install-recommends prometheus
  macOS:          brew install prometheus
  other systems:  put promtool from https://prometheus.io/download/ on PATH
MSG
exit 1
