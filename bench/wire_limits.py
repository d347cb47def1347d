"""The codec's cost before and after a change, side by side in one process (interleaved rounds).

    python bench/wire_limits.py [REV]     # REV: the git revision to compare with (default main)

Loads ``pastset/wire.py`` as it is at REV and as it is in the working tree, and
times encode and decode of the messages the pair path and the bulk path send.
"""

from __future__ import annotations

import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def load(name: str, source: str) -> Any:
    path = Path(tempfile.mkdtemp(prefix="wire-limits-")) / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def per_call(fn: Any, arg: Any, seconds: float = 0.05) -> float:
    count = 0
    start = time.perf_counter()
    while True:
        fn(arg)
        count += 1
        elapsed = time.perf_counter() - start
        if elapsed > seconds:
            return elapsed / count


def main() -> None:
    rev = sys.argv[1] if len(sys.argv) > 1 else "main"
    old = load(
        "wire_old", subprocess.check_output(["git", "-C", str(ROOT), "show", f"{rev}:pastset/wire.py"], text=True)
    )
    new = load("wire_new", (ROOT / "pastset" / "wire.py").read_text())
    import numpy as np

    messages = {
        "pair move": ("move", 3, (1, 3.14), None),
        "pair reply": (0, (1, 3.14)),
        "1000-int tuple": ("move", 3, tuple(range(1000)), None),
        "move_many 10k": ("move_many", 3, [(i, 3.14) for i in range(10_000)], None),
        "dict of 1000": ("move", 3, ({i: str(i) for i in range(1000)},), None),
        "1 MiB array": ("move", 3, (np.zeros(131072),), None),
    }
    print(f"codec at {rev} vs working tree, median of 7 interleaved rounds; ratio = new / old")
    print(f"{'message':<16} {'enc old':>10} {'enc new':>10} {'ratio':>6} {'dec old':>10} {'dec new':>10} {'ratio':>6}")
    for label, msg in messages.items():
        data = old.encode(msg)
        assert new.decode(data) is not None and new.encode(msg) == data
        times: dict[str, list[float]] = {"eo": [], "en": [], "do": [], "dn": []}
        for _ in range(7):
            times["eo"].append(per_call(old.encode, msg))
            times["en"].append(per_call(new.encode, msg))
            times["do"].append(per_call(old.decode, data))
            times["dn"].append(per_call(new.decode, data))
        m = {k: statistics.median(v) * 1e6 for k, v in times.items()}
        print(
            f"{label:<16} {m['eo']:>8.2f}us {m['en']:>8.2f}us {m['en'] / m['eo']:>6.2f} "
            f"{m['do']:>8.2f}us {m['dn']:>8.2f}us {m['dn'] / m['do']:>6.2f}"
        )


if __name__ == "__main__":
    main()
