#!/bin/sh
# Install a single-node SLURM test environment from Debian packages.
#
# Installs: slurmctld, slurmd, slurm-client (sbatch/squeue/scontrol/sinfo...)
# and munge.  Idempotent and non-interactive: if every required binary is
# already present it exits immediately without touching apt; `apt-get update`
# is only run when something has to be installed.
#
# Daemons: the Debian maintainer scripts of munge/slurmctld/slurmd try to
# start their services through invoke-rc.d (no systemd is running here).  We
# do NOT want system-wide daemons: tests/infra/slurm_cluster.py starts its own
# private munged/slurmctld/slurmd under a temp dir.  Starting is therefore
# suppressed with /usr/sbin/policy-rc.d (exit 101 = "action forbidden"):
#   * if a policy-rc.d already exists (e.g. Docker's "exit 101"), it is used
#     as is and left untouched;
#   * otherwise a temporary one is installed for the duration of apt-get and
#     removed on exit.
# After installation, any munged/slurmctld/slurmd that is running anyway is
# reported on stderr (never killed: we only ever stop processes we started).
#
# Usage: sh tests/infra/slurm-install.sh        (as root)
set -eu

export DEBIAN_FRONTEND=noninteractive
PACKAGES="slurmctld slurmd slurm-client munge"
# binary -> package that provides it
NEEDED="slurmctld:slurmctld slurmd:slurmd sbatch:slurm-client squeue:slurm-client
scontrol:slurm-client sinfo:slurm-client munged:munge munge:munge unmunge:munge
mungekey:munge"

missing=""
for pair in $NEEDED; do
    bin=${pair%%:*}
    if ! PATH="/usr/sbin:/usr/bin:/sbin:/bin:$PATH" command -v "$bin" >/dev/null 2>&1; then
        missing="$missing $bin"
    fi
done

if [ -z "$missing" ]; then
    echo "slurm-install: slurm and munge already installed"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "slurm-install: missing:$missing; must run as root to install" >&2
    exit 1
fi

echo "slurm-install: missing:$missing; installing $PACKAGES"

POLICY=/usr/sbin/policy-rc.d
own_policy=0
cleanup() {
    if [ "$own_policy" -eq 1 ]; then
        rm -f "$POLICY"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\n# temporary, from tests/infra/slurm-install.sh\nexit 101\n' >"$POLICY"
    chmod 755 "$POLICY"
    own_policy=1
fi

APT_OPTS="-y -q --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold"

# Try without refreshing the lists first; only update when that fails
# (lists missing/stale) -- keeps reruns fast and offline-friendly.
# shellcheck disable=SC2086
if ! apt-get install $APT_OPTS $PACKAGES </dev/null; then
    apt-get update -q </dev/null
    # shellcheck disable=SC2086
    apt-get install $APT_OPTS $PACKAGES </dev/null
fi

# Report (never kill) daemons that may have been started anyway.
for name in munged slurmctld slurmd; do
    for d in /proc/[0-9]*; do
        comm=$(cat "$d/comm" 2>/dev/null || true)
        if [ "$comm" = "$name" ]; then
            echo "slurm-install: NOTE: system $name is running (pid ${d#/proc/}); not touching it" >&2
        fi
    done
done

echo "slurm-install: done"
