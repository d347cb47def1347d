#!/bin/sh
# Install the Debian packages needed by tests/infra/netns_hosts.py.
#
# - idempotent: does nothing (and never touches the network) when every
#   package is already installed; runs `apt-get update` only if something is
#   missing;
# - non-interactive: DEBIAN_FRONTEND=noninteractive, stdin from /dev/null;
# - starts no services: if the system has no /usr/sbin/policy-rc.d, a
#   temporary one answering 101 ("action forbidden") is put in place for the
#   duration of the install and removed again afterwards.  (The Debian docker
#   image used for development already ships such a policy-rc.d, so
#   installing openssh-server there leaves no sshd running; see below.)
#
# Afterwards it reports (never kills) any sshd process or port-22 listener in
# the root namespace that was not there before the install.
set -eu

PACKAGES="openssh-server openssh-client iproute2 util-linux procps"

export DEBIAN_FRONTEND=noninteractive

missing=""
for p in $PACKAGES; do
    status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
    case "$status" in
        ii*) ;;
        *) missing="$missing $p" ;;
    esac
done

if [ -z "$missing" ]; then
    echo "install-deps: all packages present:$(printf ' %s' $PACKAGES)"
else
    if [ "$(id -u)" -ne 0 ]; then
        echo "install-deps: missing:$missing -- must run as root" >&2
        exit 1
    fi
    echo "install-deps: installing:$missing"

    sshd_before=$(pgrep -x sshd 2>/dev/null | sort | tr '\n' ' ' || true)

    policy=/usr/sbin/policy-rc.d
    created_policy=no
    cleanup() {
        if [ "$created_policy" = yes ]; then
            rm -f "$policy"
        fi
    }
    trap cleanup EXIT
    trap 'cleanup; exit 130' INT TERM
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\n# temporary, created by pastset tests/infra/install-deps.sh\nexit 101\n' >"$policy"
        chmod 0755 "$policy"
        created_policy=yes
    fi

    apt-get update -q </dev/null
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        $missing </dev/null

    cleanup
    created_policy=no
    trap - EXIT INT TERM

    sshd_after=$(pgrep -x sshd 2>/dev/null | sort | tr '\n' ' ' || true)
    if [ "$sshd_before" != "$sshd_after" ]; then
        echo "install-deps: WARNING: sshd processes before: [$sshd_before] after: [$sshd_after]" >&2
        echo "install-deps: (not killing them -- not started by this script)" >&2
    fi
fi

# /run/sshd is sshd's privilege-separation directory; sshd refuses to start
# without it (normally created by the init script / systemd unit).
mkdir -p /run/sshd
chmod 0755 /run/sshd

if command -v ss >/dev/null 2>&1 && ss -Hltn 'sport = :22' | grep -q .; then
    echo "install-deps: note: something listens on port 22 in the root namespace:" >&2
    ss -Hltnp 'sport = :22' >&2 || true
fi

for b in /usr/sbin/sshd /usr/bin/ssh /usr/bin/ssh-keygen /usr/bin/ssh-keyscan /usr/sbin/ip /usr/bin/unshare; do
    [ -x "$b" ] || { echo "install-deps: $b missing after install" >&2; exit 1; }
done
echo "install-deps: ok"
