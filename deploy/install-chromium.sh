#!/bin/sh
# Installs the headless browser of tests/console: Debian's `chromium` at /usr/bin/chromium,
# driven by Playwright's Python package (never `playwright install`, which downloads its
# own browsers). Called by deploy/install-tools.sh (`make tools`). As root it installs what
# is missing; otherwise it says what to run and fails, so the browser test never skips.
set -eu

if [ -x /usr/bin/chromium ]; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "install-tools: installing chromium (apt package 'chromium')" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium >/dev/null
    [ -x /usr/bin/chromium ] && exit 0
    echo "install-tools: apt-get installed 'chromium' but /usr/bin/chromium is missing" >&2
    exit 1
fi

cat >&2 <<'MSG'
install-tools: /usr/bin/chromium is missing, and it is needed by tests/console.
  Debian/Ubuntu:  sudo apt-get install --no-install-recommends chromium
  elsewhere:      set SWITCHBOARD_CHROMIUM to a Chromium or Chrome executable
MSG
exit 1
