#!/usr/bin/env bash
# The long soak: 16 client processes x OPS mixed moves, observes and indexed
# observes over 4 elements, with the checker of tests/test_soak.py proving no
# tuple lost or duplicated and indices dense and in order.
#
#   bash bench/soak.sh           20,000 operations per client
#   bash bench/soak.sh 100000
#
# Uses the test environment of `bash tests/run` (.venv-test), building it first if needed.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${PASTSET_TEST_VENV:-.venv-test}
[ -x "$venv/bin/pytest" ] || bash tests/run tests/test_wire.py >&2
export PATH="$PWD/$venv/bin:$PATH"
PASTSET_SOAK_OPS=${1:-20000} exec "$venv/bin/pytest" -p no:cacheprovider -q -s tests/test_soak.py
