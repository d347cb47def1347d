"""Tests for the network-namespace SSH hosts (tests/infra/netns_hosts.py).

Run (as root, after ``sh tests/infra/install-deps.sh``)::

    python -m pytest -v tests/infra/test_infra_netns.py

Set-up and tear-down times are printed even without ``-s``.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paramiko
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from netns_hosts import (
    SSHD,
    STATE_DIR,
    Host,
    NetnsHosts,
    cleanup_stale,
    missing_requirements,
)

_MISSING = missing_requirements()
pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(bool(_MISSING), reason="; ".join(_MISSING)),
]

HERE = Path(__file__).resolve().parent


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def report(capsys: pytest.CaptureFixture[str], message: str) -> None:
    """Print to the real terminal, also when output is captured (no ``-s``)."""
    with capsys.disabled():
        print(f"\n    [netns] {message}", end="\n    ")


def ip_names(kind: str) -> set[str]:
    """Names of links (``kind="link"``) or named namespaces (``"netns"``)."""
    out = subprocess.run(["ip", "-j", kind, "list" if kind == "netns" else "show"], capture_output=True, text=True)
    data = json.loads(out.stdout) if out.stdout.strip() else []
    return {d["name"] if kind == "netns" else d["ifname"] for d in data}


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@dataclass
class Snapshot:
    """Everything one run created, to check that it is gone after teardown."""

    tag: str  # "<prefix>-<octet>-", the start of every object name of the run
    netns: set[str]
    links: set[str]
    pids: list[int]
    tmpdir: Path
    state_files: list[Path]

    @classmethod
    def make(
        cls, prefix: str, octet: int, netns: list[str], links: list[str], pids: list[int], tmpdir: str
    ) -> Snapshot:
        """Build from plain values (also used for runs in child processes)."""
        state = [STATE_DIR / f"{prefix}-{octet}.json", STATE_DIR / f"{prefix}-{octet}.lock"]
        return cls(f"{prefix}-{octet}-", set(netns), set(links), list(pids), Path(tmpdir), state)

    @classmethod
    def of(cls, hosts: NetnsHosts) -> Snapshot:
        """Snapshot of a live ``NetnsHosts``."""
        links = [h.veth for h in hosts] + [hosts.bridge]
        return cls.make(hosts.prefix, hosts.octet, hosts.netns_names, links, hosts.sshd_pids, str(hosts.tmpdir))

    def assert_all_gone(self) -> None:
        """No namespace, link, sshd, temp dir or state file of the run remains."""
        assert not {n for n in ip_names("netns") if n.startswith(self.tag)}
        assert not {n for n in ip_names("link") if n.startswith(self.tag)}
        assert not self.netns & ip_names("netns")
        assert not self.links & ip_names("link")
        assert [p for p in self.pids if pid_alive(p)] == []
        assert not self.tmpdir.exists()
        assert [p for p in self.state_files if p.exists()] == []


def ssh_hostname(host: Host) -> str:
    """``ssh -F ssh_config <name> hostname`` with the OpenSSH client."""
    out = subprocess.run(
        host.ssh_argv("hostname"), capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def paramiko_client(known_hosts: Path) -> paramiko.SSHClient:
    """An SSHClient trusting only the pinned keys (RejectPolicy otherwise)."""
    client = paramiko.SSHClient()
    client.load_host_keys(str(known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    return client


def paramiko_hostname(host: Host, *, hostname: str | None = None, sock: socket.socket | None = None) -> str:
    """Run ``hostname`` on ``host`` through paramiko and return the output."""
    client = paramiko_client(host.known_hosts)
    try:
        client.connect(
            hostname or host.address,
            port=host.port,
            username=host.user,
            key_filename=str(host.key),
            look_for_keys=False,
            allow_agent=False,
            timeout=10,
            banner_timeout=10,
            auth_timeout=10,
            sock=sock,
        )
        _, stdout, _ = client.exec_command("hostname", timeout=10)
        name = stdout.read().decode().strip()
        assert stdout.channel.recv_exit_status() == 0
        return name
    finally:
        client.close()


# --------------------------------------------------------------------------
# one set of three hosts shared by the read-only tests
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hosts() -> Iterator[NetnsHosts]:
    """Three hosts pst-h1..pst-h3 for the whole module."""
    with NetnsHosts(n=3, prefix="pst") as h:
        yield h


def test_three_hosts_come_up(hosts: NetnsHosts, capsys: pytest.CaptureFixture[str]) -> None:
    report(capsys, f"{hosts!r}: set-up {hosts.setup_seconds:.3f} s")
    assert [h.name for h in hosts] == ["pst-h1", "pst-h2", "pst-h3"]
    assert len({h.address for h in hosts}) == 3
    assert hosts.network is not None
    assert all(hosts.network.overlaps(type(hosts.network)(f"{h.address}/32")) for h in hosts)
    assert hosts.addresses == {h.name: h.address for h in hosts}
    assert hosts.by_name("pst-h2") is hosts[1]
    assert set(hosts.netns_names) <= ip_names("netns")
    assert {hosts.bridge, *(h.veth for h in hosts)} <= ip_names("link")
    for h in hosts:
        assert h.pid is not None
        # the Popen pid *is* the sshd after the exec chain ip -> unshare -> sh -> sshd
        assert os.readlink(f"/proc/{h.pid}/exe") == SSHD
        assert int((h.sshd_config.parent / "sshd.pid").read_text()) == h.pid
        assert h.key == hosts.key and h.known_hosts.is_file() and h.ssh_config.is_file()
    hosts_file = hosts.hosts_file.read_text()
    for name, address in hosts.addresses.items():
        assert f"{address}\t{name}\n" in hosts_file


def test_fixed_mac_addresses(hosts: NetnsHosts) -> None:
    """Bridge and both ends of every veth have the deterministic MACs."""
    macs = {
        link["ifname"]: link["address"]
        for link in json.loads(subprocess.run(["ip", "-j", "link"], capture_output=True, text=True).stdout)
    }
    assert macs[hosts.bridge].startswith("02:70:")
    assert macs[hosts.bridge].endswith(":00:00")
    for h in hosts:
        assert macs[h.veth].endswith(f":{h.index:02x}:01")
        inner = json.loads(
            subprocess.run(["ip", "-n", h.netns, "-j", "link", "show", "eth0"], capture_output=True, text=True).stdout
        )[0]["address"]
        assert inner == macs[h.veth][:-2] + "02"


@pytest.mark.parametrize("index", [0, 1, 2])
def test_openssh_client_sees_distinct_hostnames(hosts: NetnsHosts, index: int) -> None:
    assert ssh_hostname(hosts[index]) == f"pst-h{index + 1}"


def test_openssh_client_by_address_alias(hosts: NetnsHosts) -> None:
    """The ssh_config also covers the bare address (``ssh -F cfg 10.77.X.3``)."""
    out = subprocess.run(
        ["ssh", "-F", str(hosts.ssh_config), hosts[1].address, "hostname"],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "pst-h2"


def test_paramiko_with_pinned_known_hosts(hosts: NetnsHosts) -> None:
    assert [paramiko_hostname(h) for h in hosts] == ["pst-h1", "pst-h2", "pst-h3"]


def test_paramiko_via_ssh_config(hosts: NetnsHosts) -> None:
    """paramiko.SSHConfig understands the generated ssh_config."""
    config = paramiko.SSHConfig.from_path(str(hosts.ssh_config))
    for h in hosts:
        opts = config.lookup(h.name)
        assert opts["hostname"] == h.address
        assert opts["user"] == "root"
        assert opts["stricthostkeychecking"] == "yes"
        client = paramiko_client(Path(opts["userknownhostsfile"]))
        try:
            client.connect(
                opts["hostname"],
                port=int(opts["port"]),
                username=opts["user"],
                key_filename=opts["identityfile"][0],
                look_for_keys=False,
                allow_agent=False,
                timeout=10,
            )
            _, stdout, _ = client.exec_command("hostname")
            assert stdout.read().decode().strip() == h.name
        finally:
            client.close()


def test_paramiko_known_hosts_pinned_by_name(hosts: NetnsHosts) -> None:
    """Connecting as ``pst-h2`` (own socket, no DNS) checks the key pinned by name."""
    h = hosts[1]
    sock = socket.create_connection((h.address, h.port), timeout=10)
    assert paramiko_hostname(h, hostname=h.name, sock=sock) == "pst-h2"


def test_paramiko_rejects_wrong_or_unknown_host_key(hosts: NetnsHosts, tmp_path: Path) -> None:
    h1, h2 = hosts[0], hosts[1]
    assert h1.host_public_key != h2.host_public_key
    swapped = tmp_path / "known_hosts"
    swapped.write_text(f"{h2.address} {h1.host_public_key}\n")
    client = paramiko_client(swapped)
    with pytest.raises(paramiko.BadHostKeyException):
        client.connect(
            h2.address, username="root", key_filename=str(h2.key), look_for_keys=False, allow_agent=False, timeout=10
        )
    client.close()
    empty = tmp_path / "empty"
    empty.write_text("")
    client = paramiko_client(empty)
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        client.connect(
            h2.address, username="root", key_filename=str(h2.key), look_for_keys=False, allow_agent=False, timeout=10
        )
    client.close()


def test_run_inside_host(hosts: NetnsHosts) -> None:
    h1 = hosts[0]
    assert h1.run(["hostname"]).stdout.strip() == "pst-h1"
    assert h1.run(["pwd"]).stdout.strip() == os.getcwd()
    addrs = h1.run(["ip", "-4", "-o", "addr", "show", "dev", "eth0"]).stdout
    assert f" {h1.address}/24 " in addrs
    # /etc/hosts inside the host knows the other hosts by name
    assert h1.run(["getent", "hosts", "pst-h3"]).stdout.split() == [hosts[2].address, "pst-h3"]
    # no IPv6 addresses (no link-local chatter) on eth0 and the bridge
    assert h1.run(["ip", "-6", "-o", "addr", "show", "dev", "eth0"]).stdout == ""
    bridge_v6 = subprocess.run(["ip", "-6", "-o", "addr", "show", "dev", hosts.bridge], capture_output=True, text=True)
    assert bridge_v6.stdout == ""
    # no default route: nothing can leave the private network
    routes = h1.run(["ip", "-4", "route", "show", "table", "all"]).stdout
    assert "default" not in routes
    assert f"{hosts.network} dev eth0" in routes


def test_host_to_host_ssh_by_name(hosts: NetnsHosts) -> None:
    """A process on pst-h1 reaches pst-h3 by name (through the bridge)."""
    out = hosts[0].run(["ssh", "-F", str(hosts.ssh_config), "pst-h3", "hostname"], check=False, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "pst-h3"


def test_cut_off_and_restore(hosts: NetnsHosts, capsys: pytest.CaptureFixture[str]) -> None:
    h2 = hosts[1]
    assert not h2.is_cut_off
    h2.cut_off()
    try:
        assert h2.is_cut_off
        assert h2.pid is not None  # the host is still running, just unreachable
        start = time.monotonic()
        with pytest.raises(OSError):
            socket.create_connection((h2.address, h2.port), timeout=1.0).close()
        assert time.monotonic() - start < 5
        # the others are unaffected
        assert ssh_hostname(hosts[0]) == "pst-h1"
        assert ssh_hostname(hosts[2]) == "pst-h3"
    finally:
        h2.restore()
    assert not h2.is_cut_off
    waited = h2.wait_ready(timeout=5)
    report(capsys, f"pst-h2 reachable again {waited:.3f} s after restore")
    assert ssh_hostname(h2) == "pst-h2"


def test_cleanup_stale_spares_live_run(hosts: NetnsHosts) -> None:
    removed = cleanup_stale("pst")
    assert not [r for r in removed if f"pst-{hosts.octet}-" in r]
    assert set(hosts.netns_names) <= ip_names("netns")
    assert paramiko_hostname(hosts[0]) == "pst-h1"


# --------------------------------------------------------------------------
# life cycle
# --------------------------------------------------------------------------


def test_teardown_removes_everything_and_recreate_is_fast(capsys: pytest.CaptureFixture[str]) -> None:
    with NetnsHosts(n=3, prefix="pst") as first:
        assert ssh_hostname(first[0]) == "pst-h1"
        # keep an SSH session open across teardown: its processes must go too
        session = subprocess.Popen(first[2].ssh_argv("sleep 300"), stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not [p for p in first[2].run(["ps", "-eo", "args"]).stdout.splitlines() if p == "sleep 300"]:
            assert time.monotonic() < deadline, "remote sleep did not start"
            time.sleep(0.05)
        snap = Snapshot.of(first)
        octet = first.octet
    session.wait(timeout=10)
    snap.assert_all_gone()
    report(capsys, f"first run: set-up {first.setup_seconds:.3f} s, tear-down {first.teardown_seconds:.3f} s")

    # Same subnet, same names, same MACs, immediately: must not stall on ARP.
    start = time.monotonic()
    with NetnsHosts(n=3, prefix="pst", octet=octet) as second:
        ready = time.monotonic() - start
        for h in second:
            t0 = time.monotonic()
            assert paramiko_hostname(h) == h.name
            connect = time.monotonic() - t0
            assert connect < 2.0, f"{h.name}: first connection took {connect:.1f} s"
        total = time.monotonic() - start
        snap = Snapshot.of(second)
    snap.assert_all_gone()
    report(
        capsys,
        f"re-created on {second.network}: ready after {ready:.3f} s, all 3 paramiko sessions done after "
        f"{total:.3f} s, tear-down {second.teardown_seconds:.3f} s",
    )
    assert total < 5.0


def test_exception_in_block_cleans_up() -> None:
    with pytest.raises(ZeroDivisionError), NetnsHosts(n=2, prefix="pst") as hosts:
        snap = Snapshot.of(hosts)
        _ = 1 / 0
    snap.assert_all_gone()


def test_setup_failure_cleans_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """If sshd cannot start, __enter__ raises and leaves nothing behind."""
    import netns_hosts

    def broken(self: NetnsHosts, host: Host, *args: object) -> str:
        return "ThisIsNotAnOption yes\n"

    monkeypatch.setattr(netns_hosts.NetnsHosts, "_sshd_config_text", broken)
    hosts = NetnsHosts(n=2, prefix="pst", ready_timeout=5)
    with pytest.raises(netns_hosts.NetnsError, match="ThisIsNotAnOption"):
        hosts.__enter__()
    assert hosts.octet > 0 and hosts.tmpdir != Path()
    tag = f"pst-{hosts.octet}-"
    assert not {n for n in ip_names("netns") | ip_names("link") if n.startswith(tag)}
    assert not hosts.tmpdir.exists()
    assert not (STATE_DIR / f"pst-{hosts.octet}.json").exists()


CHILD = textwrap.dedent(
    """
    import json, sys, time
    sys.path.insert(0, {here!r})
    from netns_hosts import NetnsHosts
    with NetnsHosts(n=2, prefix={prefix!r}) as hosts:
        print(json.dumps({{"netns": hosts.netns_names, "links": [h.veth for h in hosts] + [hosts.bridge],
                          "pids": hosts.sshd_pids, "tmpdir": str(hosts.tmpdir), "octet": hosts.octet}}), flush=True)
        time.sleep(120)
    """
)


def start_child(prefix: str) -> tuple[subprocess.Popen[str], Snapshot]:
    """A separate Python process holding hosts; returns it and its snapshot."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(here=str(HERE), prefix=prefix)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        _, err = proc.communicate(timeout=30)
        pytest.fail(f"child failed: {err}")
    info = json.loads(line)
    snap = Snapshot.make(prefix, info["octet"], info["netns"], info["links"], info["pids"], info["tmpdir"])
    return proc, snap


def test_sigterm_cleans_up(capsys: pytest.CaptureFixture[str]) -> None:
    prefix = "pt" + secrets.token_hex(2)  # private to this test: concurrent sessions cannot interfere
    proc, snap = start_child(prefix)
    try:
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        report(capsys, f"SIGTERM -> child gone and cleaned up in {time.monotonic() - start:.3f} s")
        assert "SigTerm" in err
        snap.assert_all_gone()
    finally:
        proc.kill()
        proc.communicate()
        cleanup_stale(prefix)


def test_sigkill_then_cleanup_stale(capsys: pytest.CaptureFixture[str]) -> None:
    prefix = "pk" + secrets.token_hex(2)
    proc, snap = start_child(prefix)
    try:
        proc.kill()
        proc.communicate(timeout=30)
        # PR_SET_PDEATHSIG: the sshd listeners die with their parent
        deadline = time.monotonic() + 5
        while [p for p in snap.pids if pid_alive(p)]:
            assert time.monotonic() < deadline, "sshd survived its parent"
            time.sleep(0.02)
        assert snap.netns <= ip_names("netns")
        start = time.monotonic()
        removed = cleanup_stale(prefix)
        report(capsys, f"cleanup_stale({prefix!r}) took {time.monotonic() - start:.3f} s: {removed}")
        assert removed
        snap.assert_all_gone()
        assert cleanup_stale(prefix) == []
    finally:
        cleanup_stale(prefix)
