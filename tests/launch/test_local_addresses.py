"""This machine is local whatever address names it: PSMASTER and hosts-file lines by interface address.

A network namespace of the test's own gets a veth interface with a cluster
address that no name of the machine resolves to; inside it there is no sshd,
so a run that took that address for another host would fail to connect.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)

APP = """
import pastset
p = pastset.PastSet()
e = p.enter(("here", int))
p.spawn("task.py", "7")
print("got", e.observe(), flush=True)
p.halt()
"""
TASK = """
import sys, pastset
pastset.PastSet().enter(("here", int)).move((int(sys.argv[1]),))
"""
CHECK = """
import sys
from pastset.settings import is_this_host, interface_addresses
mine = sys.argv[1]
print(sorted(interface_addresses()))
print(is_this_host(mine), is_this_host(mine.rsplit(".", 1)[0] + ".6"), is_this_host("[::1]"), is_this_host("127.0.0.1"))
"""


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=30)


@pytest.fixture
def netns() -> Iterator[tuple[str, str]]:
    """A namespace with loopback and a veth interface holding 10.213.N.5/24; removed afterwards."""
    name = f"harden-{secrets.token_hex(3)}"
    address = f"10.213.{secrets.randbelow(250) + 1}.5"
    sh("ip", "netns", "add", name)
    try:
        sh("ip", "-n", name, "link", "set", "lo", "up")
        sh("ip", "-n", name, "link", "add", "cluster0", "type", "veth", "peer", "name", "cluster1")
        sh("ip", "-n", name, "addr", "add", f"{address}/24", "dev", "cluster0")
        sh("ip", "-n", name, "link", "set", "cluster0", "up")
        sh("ip", "-n", name, "link", "set", "cluster1", "up")
        yield name, address
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=30)


def in_netns(name: str, args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", name, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=90
    )


def test_an_interface_address_is_this_host(netns, tmp_path):
    name, address = netns
    done = in_netns(name, [sys.executable, "-c", CHECK, address], tmp_path, dict(os.environ))
    assert done.returncode == 0, done.stderr
    listed, answers = done.stdout.splitlines()
    assert address in listed
    assert answers == "True False True True"


def test_psmaster_and_hosts_file_by_cluster_address_run_locally_without_ssh(netns, tmp_path):
    name, address = netns
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "task.py").write_text(TASK)
    (tmp_path / "hosts").write_text(f"# the head node, by its cluster address\n{address}\n")
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PS")}
    env.update(
        PSMASTER=address,
        PSHOSTS=str(tmp_path / "hosts"),
        PSPROCS="1",
        PSBIN=str(tmp_path),
        PSSSH="ssh -o BatchMode=yes -o ConnectTimeout=2",
        XDG_RUNTIME_DIR=str(runtime),
    )
    done = in_netns(name, [sys.executable, "-m", "pastset.commands.run", "app.py"], tmp_path, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == "got (7,)\n"
    assert "port 22" not in done.stderr and "cannot connect" not in done.stderr
