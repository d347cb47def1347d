"""Scheduler.node_gone: a host the batch system took away is given up like a dead host."""

from __future__ import annotations

from pathlib import Path

from pastset.core.scheduler import Scheduler
from pastset.core.space import Space


def test_node_gone_gives_up_exactly_the_clients_on_that_node_and_fails_their_tasks(tmp_path: Path) -> None:
    (tmp_path / "work.py").write_text("")
    scheduler = Scheduler(Space("nodes", [str(tmp_path)]), check_apps=False)
    on_n3 = scheduler.register({"host": "n3.cluster", "node": "n3"})
    by_host = scheduler.register({"host": "n3"})  # no batch node recorded: its host name counts
    on_n1 = scheduler.register({"host": "n1", "node": "n1"})
    tid = scheduler.spawn("work.py")
    while True:  # hand the task to the client on n3
        task = scheduler.next_task(on_n3, 5)
        if task is not None and task["id"] == tid:
            break
    assert sorted(scheduler.node_gone("n3", "SLURM set node n3 drained (disk): host down")) == sorted([on_n3, by_host])
    clients = {c["id"]: c for c in scheduler.snapshot()["clients"]}
    assert not clients[on_n3]["alive"] and "drained" in clients[on_n3]["gone_reason"]
    assert clients[on_n1]["alive"]
    (task_row,) = [t for t in scheduler.snapshot()["tasks"] if t["id"] == tid]
    assert task_row["state"] == "failed" and "drained" in task_row["stderr_tail"]
    assert scheduler.heartbeat(on_n3) is False  # told at its next heartbeat, so it stops
    assert scheduler.heartbeat(on_n1) is True
    assert scheduler.node_gone("n3", "again") == []  # once only
