#!/bin/sh
# Install the headless browser used by tests/test_web.py: Debian's chromium and
# chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver).
#
# - idempotent: exits at once, without touching apt or the network, when both
#   binaries are already there;
# - non-interactive: DEBIAN_FRONTEND=noninteractive, stdin from /dev/null;
# - `apt-get update` runs only when the install fails without it (lists
#   missing or stale), which keeps reruns fast and offline-friendly;
# - never downloads a browser from anywhere but the Debian archive (selenium's
#   own driver manager is not used: the test points selenium at the system
#   chromedriver).
#
# Usage: sh tests/infra/browser-install.sh        (as root)
set -eu

export DEBIAN_FRONTEND=noninteractive
PACKAGES="chromium chromium-driver"

missing=""
for bin in /usr/bin/chromium /usr/bin/chromedriver; do
    [ -x "$bin" ] || missing="$missing $bin"
done

if [ -z "$missing" ]; then
    echo "browser-install: chromium and chromedriver already installed"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "browser-install: missing:$missing; must run as root to install $PACKAGES" >&2
    exit 1
fi

echo "browser-install: missing:$missing; installing $PACKAGES"
APT_OPTS="-y -q --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold"
# shellcheck disable=SC2086
if ! apt-get install $APT_OPTS $PACKAGES </dev/null; then
    apt-get update -q </dev/null
    # shellcheck disable=SC2086
    apt-get install $APT_OPTS $PACKAGES </dev/null
fi

for bin in /usr/bin/chromium /usr/bin/chromedriver; do
    [ -x "$bin" ] || { echo "browser-install: $bin missing after install" >&2; exit 1; }
done
echo "browser-install: $(/usr/bin/chromium --version 2>/dev/null || echo chromium); ok"
