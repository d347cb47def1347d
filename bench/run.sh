#!/usr/bin/env bash
# The benchmark with one command, from a fresh clone:
#
#   bash bench/run.sh            the full run (about 4 minutes on 2 cores); writes bench/RESULTS.md
#   bash bench/run.sh --quick    seconds-long smoke run at tiny sizes, no verdicts
#   bash bench/run.sh --only P1,P3
#
# It installs what it compares against (Debian's redis-server, when run as root
# and missing), builds this checkout into .venv-bench with the bench extra
# (redis-py, NumPy, py-spy), then runs bench/run.py, which starts its own
# pastset server, redis-server and bare Pyro5 server on 127.0.0.1 and stops
# them by pid when it ends.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${PASTSET_BENCH_VENV:-.venv-bench}
python=${PYTHON:-python3}

if ! command -v redis-server >/dev/null 2>&1; then
    sh tests/infra/apt-install.sh redis-server >&2 || exit 2
fi

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip -q --disable-pip-version-check install ".[bench]" >&2
exec "$venv/bin/python" bench/run.py "$@"
