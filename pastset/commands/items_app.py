"""The application pypsitems runs under pypsrun: hand out items, collect results.

``python items_app.py PLAN.json`` — started by ``pypsitems``, not by hand.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pastset
from pastset.entrypoints import MODULES
from pastset.items.plan import JOBS, RESULTS, finished, load_plan, log_line, record_result


def _run_number(folder: Path) -> int:
    """This run's number in the experiment (1 for the first), counted from the run log's start lines.

    Session logs carry it in their names: task ids repeat from one run to the next, so without it a
    rerun's items would be appended to the log of an earlier run's session.
    """
    log = folder / "run.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return 1 + sum(1 for line in lines if " start: " in line)


def main(argv: list[str]) -> int:
    """Run one experiment; exit status 0 when every item succeeded."""
    plan = load_plan(argv[0])
    folder = Path(plan.directory)
    done = finished(folder)
    todo = [item for item in plan.items if item.index not in done]
    run = _run_number(folder)
    log_line(folder, "run.log", f"start: {len(plan.items)} items, {len(done)} already done, {len(todo)} to do")
    if done:
        print(
            f"pypsitems: {len(done)} of {len(plan.items)} items already done in {folder}; doing the rest",
            file=sys.stderr,
        )
    pset = pastset.PastSet()
    shared = pset.enter(("pypsitems.plan", str))
    shared.move((json.dumps(asdict(plan)),))
    jobs = pset.enter(JOBS, leases=True)
    results = pset.enter(RESULTS)
    jobs.move_many([(item.index, item.value) for item in todo])
    for _ in range(plan.workers):
        pset.spawn("module:" + MODULES["items_worker"])
    failed: list[int] = []
    seconds: list[float] = []
    began = time.monotonic()
    try:
        with _progress(len(todo)) as advance:
            for _ in range(len(todo)):
                index, status, out, err, host, took, task = results.observe()
                record_result(
                    folder,
                    {
                        "index": index,
                        "item": plan.items[index].value,
                        "status": status,
                        "stdout": out,
                        "stderr": err,
                        "host": host,
                        "seconds": took,
                        "task": task,
                    },
                )
                log_line(folder, f"sessions/run{run}-{host}-{task}.log", f"item {index} status {status} {took:.3f}s")
                seconds.append(took)
                if status != 0:
                    failed.append(index)
                    log_line(folder, "run.log", f"item {index} failed with status {status} on {host}")
                advance()
    except (KeyboardInterrupt, pastset.PastSetConnectionError) as err:
        why = "interrupted" if isinstance(err, KeyboardInterrupt) else f"stopped ({err})"
        left = len(todo) - len(seconds)
        log_line(folder, "run.log", f"{why}: {len(seconds)} items done in this run, {left} left")
        print(
            f"\npypsitems: {why} with {left} of {len(plan.items)} items left; the {len(seconds)} finished in this "
            f"run are kept in {folder}. Run the same command again to do only the rest.",
            file=sys.stderr,
        )
        return 130 if isinstance(err, KeyboardInterrupt) else 1
    jobs.move_many([(-1, "")] * plan.workers)
    pset.halt()
    retried = jobs.last() - len(todo) - plan.workers  # tuples handed back by dead workers
    wall = time.monotonic() - began
    summary = {
        "items": len(plan.items),
        "skipped": len(done),
        "done": len(todo) - len(failed),
        "failed": len(failed),
        "retried": retried,
        "seconds": round(wall, 2),
        "mean_item_seconds": round(sum(seconds) / len(seconds), 4) if seconds else 0.0,
        "directory": str(folder),
    }
    (folder / "summary.json").write_text(json.dumps(summary, indent=1))
    log_line(folder, "run.log", f"end: {json.dumps(summary)}")
    print(
        f"pypsitems: {summary['done']} done, {summary['failed']} failed, {summary['retried']} retried, "
        f"{summary['skipped']} skipped (done before); {wall:.1f} s, {summary['mean_item_seconds']:.3f} s per item; "
        f"results in {folder}",
        file=sys.stderr,
    )
    if failed:
        print(
            f"pypsitems: failed items: {', '.join(map(str, failed[:20]))}{' ...' if len(failed) > 20 else ''}",
            file=sys.stderr,
        )
    return 1 if failed else 0


class _progress:  # noqa: N801 - used as a context manager
    """A progress bar with rate and ETA on a terminal; a quiet no-op elsewhere."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.bar = None

    def __enter__(self):  # type: ignore[no-untyped-def]
        if sys.stderr.isatty() and self.total:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("items"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]} items/s"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task("items", total=self.total, rate="0.0")
            self.began = time.monotonic()

        def advance() -> None:
            if self.bar is not None:
                completed = self.bar.tasks[0].completed + 1
                rate = completed / max(1e-6, time.monotonic() - self.began)
                self.bar.update(self.task, advance=1, rate=f"{rate:.1f}")

        return advance

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
