#!/bin/sh
# Install Debian packages by name, for the tests and the benchmark:
#
#   sh tests/infra/apt-install.sh redis-server [PACKAGE ...]      (as root)
#
# Idempotent (nothing happens when every package is installed), non-interactive,
# and starts no service: a temporary /usr/sbin/policy-rc.d answering 101 is put
# in place for the install when the system has none.  `apt-get update` runs only
# when the install fails without it.
set -eu
export DEBIAN_FRONTEND=noninteractive

missing=""
for p in "$@"; do
    case "$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)" in
        ii*) ;;
        *) missing="$missing $p" ;;
    esac
done
if [ -z "$missing" ]; then
    echo "apt-install: already installed: $*"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "apt-install: missing:$missing; run as root, or install them with: sudo apt-get install$missing" >&2
    exit 1
fi

policy=/usr/sbin/policy-rc.d
own=no
cleanup() { if [ "$own" = yes ]; then rm -f "$policy"; fi; }
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# temporary, from tests/infra/apt-install.sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    own=yes
fi
opts="-y -q --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold"
echo "apt-install: installing:$missing"
# shellcheck disable=SC2086
if ! apt-get install $opts $missing </dev/null; then
    apt-get update -q </dev/null
    # shellcheck disable=SC2086
    apt-get install $opts $missing </dev/null
fi
echo "apt-install: ok"
