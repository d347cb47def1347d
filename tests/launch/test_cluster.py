"""pypsrun across real hosts: network namespaces, one sshd each, paramiko and OpenSSH.

Needs root; ``tests/run`` installs what it needs (tests/infra/install-deps.sh).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "infra"))

from conftest import EXAMPLES, LiveRun, listening_sockets, processes_carrying, run_processes, wait_until_gone
from netns_hosts import NetnsHosts

pytestmark = [pytest.mark.netns, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def hosts() -> Iterator[NetnsHosts]:
    with NetnsHosts(n=3, prefix="pst") as made:
        yield made


@pytest.fixture
def home(hosts: NetnsHosts, tmp_path: Path) -> Path:
    """A HOME whose ~/.ssh/config reaches the three hosts, keys and host keys pinned."""
    ssh = tmp_path / "home" / ".ssh"
    ssh.mkdir(parents=True)
    shutil.copy(hosts.ssh_config, ssh / "config")
    (tmp_path / "home" / "hosts").write_text("".join(f"{h.name}\n" for h in hosts))
    return tmp_path / "home"


def assert_none_left(result: subprocess.CompletedProcess, home: Path) -> None:
    """No process of that run is left, here or on a host (all hosts share this /proc; remote ones
    may take a moment to go): found by the run id pypsrun logged at debug level once its server
    was up, and by this test's own HOME, which every local process of the run carries."""
    found = re.search(r"run (\S+): server ready", result.stderr)
    if found:
        run_id = found.group(1)
        assert wait_until_gone(lambda: run_processes(run_id)) == []
    assert wait_until_gone(lambda: processes_carrying(str(home))) == []


def pypsrun(home: Path, app: Path, *args: str, timeout: float = 90, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PS")}
    environ.update(HOME=str(home), PSHOSTS=str(home / "hosts"), PSLOGLEVEL="info")
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "pastset.commands.run", str(app), *args],
        env=environ,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


HOSTNAMES_APP = """
import json, os, subprocess, sys
import pastset
p = pastset.PastSet()
names = p.enter(("name", str))
for i in range(12):
    p.spawn("whereami.py", [i])
seen = sorted({names.observe()[0] for _ in range(12)})
clients = json.loads(subprocess.run([sys.executable, "-m", "pastset.commands.manage", "clients", "--json",
                                     "--run", os.environ["PSRUN"]], capture_output=True, text=True).stdout)
print(json.dumps({"tasks_ran_on": seen, "clients_on": sorted(c["host"] for c in clients)}))
p.halt()
"""

WHEREAMI = (
    "import socket, time, pastset\n"
    "time.sleep(0.2)\n"
    "pastset.PastSet().enter(('name', str)).move((socket.gethostname(),))\n"
)


def test_pi_and_a_bag_of_tasks_across_three_hosts(hosts, home):
    pi = pypsrun(home, EXAMPLES / "mcpiserver.py", "3", "30", "20000", PSLOGLEVEL="debug")
    assert pi.returncode == 0, pi.stderr
    assert "Pi is found as 3.1" in pi.stdout
    assert "clients on: pst-h1, pst-h2, pst-h3" in pi.stderr
    (home / "whereami.py").write_text(WHEREAMI)
    app = home / "hostnames.py"
    app.write_text(HOSTNAMES_APP)
    result = pypsrun(home, app, PSLOGLEVEL="debug")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["clients_on"] == ["pst-h1", "pst-h2", "pst-h3"]  # from the registered specs
    assert report["tasks_ran_on"] == ["pst-h1", "pst-h2", "pst-h3"]
    assert_none_left(pi, home)
    assert_none_left(result, home)


def test_openssh_command_in_psssh_is_used(hosts, home):
    result = pypsrun(home, EXAMPLES / "mcpiserver.py", "3", "12", "10000", PSSSH=f"ssh -F {home / '.ssh' / 'config'}")
    assert result.returncode == 0, result.stderr
    assert "Pi is found" in result.stdout


def test_slot_forms_and_wrap_around(hosts, home):
    (home / "hosts").write_text("pst-h1 slots=2\n1/pst-h2\npst-h3:1\n")
    result = pypsrun(home, EXAMPLES / "mcpiserver.py", "4", "8", "1000")
    assert result.returncode == 0, result.stderr
    assert "clients on: pst-h1, pst-h1, pst-h2, pst-h3" in result.stderr
    result = pypsrun(home, EXAMPLES / "mcpiserver.py", "5", "10", "1000", PSPROCS="5")
    assert result.returncode == 0, result.stderr
    assert "wrapping around" in result.stderr
    assert "clients on: pst-h1, pst-h1, pst-h2, pst-h3, pst-h1" in result.stderr


def test_proxyjump_in_ssh_config_is_followed(hosts, home):
    config = home / ".ssh" / "config"
    text = config.read_text()
    for h in hosts[1:]:  # reach pst-h2 and pst-h3 through pst-h1
        text = text.replace(f"Host {h.name} {h.address}\n", f"Host {h.name} {h.address}\n    ProxyJump pst-h1\n")
    config.write_text(text)
    assert text.count("ProxyJump pst-h1") == 2
    result = pypsrun(home, EXAMPLES / "mcpiserver.py", "3", "12", "5000")
    assert result.returncode == 0, result.stderr
    assert "Pi is found" in result.stdout


def test_server_side_on_a_remote_master(hosts, home):
    (home / "hosts").write_text("pst-h2\npst-h3\n")
    result = pypsrun(home, EXAMPLES / "mcpiserver.py", "2", "10", "5000", PSMASTER="pst-h1")
    assert result.returncode == 0, result.stderr
    assert "Pi is found" in result.stdout
    assert "at 10." in result.stderr  # the server listens on pst-h1's address


def test_unreachable_host_fails_fast_naming_it(hosts, home):
    hosts[1].cut_off()
    try:
        start = time.monotonic()
        result = pypsrun(home, EXAMPLES / "simple.py", PSLOGLEVEL="debug")
        took = time.monotonic() - start
    finally:
        hosts[1].restore()
    assert result.returncode != 0
    assert "pst-h2" in result.stderr and "no answer" in result.stderr
    assert "0 1" not in result.stdout
    assert took < 30
    assert_none_left(result, home)


def test_unreachable_master_fails_naming_it(hosts, home):
    hosts[0].cut_off()
    try:
        result = pypsrun(home, EXAMPLES / "simple.py", PSMASTER="pst-h1")
    finally:
        hosts[0].restore()
    assert result.returncode != 0
    assert "pst-h1" in result.stderr


def test_refused_authentication_names_host_and_fix(hosts, home, tmp_path):
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    config = home / ".ssh" / "config"
    config.write_text(config.read_text().replace(str(hosts.key), str(other)))
    result = pypsrun(home, EXAMPLES / "simple.py")
    assert result.returncode != 0
    assert "authentication refused" in result.stderr and "pst-h" in result.stderr


def test_unknown_host_key_is_refused_with_how_to_accept(hosts, home, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    config = home / ".ssh" / "config"
    config.write_text(config.read_text().replace(str(hosts.known_hosts), str(empty)))
    result = pypsrun(home, EXAMPLES / "simple.py")
    assert result.returncode != 0
    assert "host key is not known" in result.stderr and "ssh pst-h" in result.stderr
    assert "PSSSHACCEPT" in result.stderr
    accepted = pypsrun(home, EXAMPLES / "simple.py", PSSSHACCEPT="yes")
    assert accepted.returncode == 0, accepted.stderr
    assert accepted.stdout.splitlines() == ["0 1", "(42, 3.14)", "1 1"]


def test_changed_host_key_is_refused(hosts, home, tmp_path):
    wrong = tmp_path / "wrong_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)], check=True)
    public = Path(f"{wrong}.pub").read_text().split()
    lines = [f"{h.address} {public[0]} {public[1]}\n" for h in hosts]
    known = tmp_path / "known_wrong"
    known.write_text("".join(lines))
    config = home / ".ssh" / "config"
    config.write_text(config.read_text().replace(str(hosts.known_hosts), str(known)))
    result = pypsrun(home, EXAMPLES / "simple.py")
    assert result.returncode != 0
    assert "CHANGED" in result.stderr and "ssh-keygen -R" in result.stderr


def test_host_without_pastset_is_named(hosts, home):
    result = pypsrun(home, EXAMPLES / "simple.py", PSPYTHON="/usr/bin/python3", PSLOGLEVEL="debug")
    assert result.returncode != 0
    assert "No module named" in result.stderr and "install pastset on that host" in result.stderr
    assert_none_left(result, home)


def test_host_without_python_is_named(hosts, home):
    result = pypsrun(home, EXAMPLES / "simple.py", PSPYTHON="/nonexistent/python3")
    assert result.returncode != 0
    assert "status 127" in result.stderr and "PSPYTHON" in result.stderr


STRAY_APP = """
import os, pathlib, subprocess, sys, time
import pastset
p = pastset.PastSet()
for _ in range(3):
    p.spawn("stray.py")
pathlib.Path("run-id").write_text(os.environ["PSRUN"])
time.sleep(120)
"""

STRAY_TASK = (
    "import subprocess, sys\n"
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'], start_new_session=True)\n"
)


def test_pypsclean_ends_strays_on_every_host_by_run_identity(hosts, home):
    (home / "stray.py").write_text(STRAY_TASK)
    app = home / "strays.py"
    app.write_text(STRAY_APP)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PS")}
    environ.update(HOME=str(home), PSHOSTS=str(home / "hosts"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pastset.commands.run", str(app)], env=environ, cwd=home, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 60
        while not (home / "run-id").exists():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        run_id = (home / "run-id").read_text()
        deadline = time.monotonic() + 30
        while len([p for p in run_processes(run_id) if "time.sleep(300)" in p[1]]) < 3:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        os.killpg(proc.pid, 9)  # pypsrun and the app die without cleaning up
        proc.wait()
        strays = [p for p in run_processes(run_id) if "time.sleep(300)" in p[1]]
        assert len(strays) == 3  # detached into their own sessions: only pypsclean can find them
        cleaned = subprocess.run(
            [sys.executable, "-m", "pastset.commands.clean", "--run", run_id],
            env=environ,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert cleaned.returncode == 0, cleaned.stderr
        assert run_id in cleaned.stdout
        for host in ("pst-h1", "pst-h2", "pst-h3"):
            assert f"on {host}" in cleaned.stdout
        deadline = time.monotonic() + 10
        while run_processes(run_id) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert run_processes(run_id) == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()


SLEEPY_BAG = """
import os, sys, pastset
p = pastset.PastSet()
jobs, done = p.enter(("jobs", float)), p.enter(("done", str))
for i in range(300):
    jobs.move((0.2,))
for _ in range(3):
    p.spawn("sleepy.py")
print("RUN", os.environ["PSRUN"], file=sys.stderr, flush=True)
for i in range(300):
    done.observe()
p.halt()
"""

SLEEPY = """
import socket, time, pastset
p = pastset.PastSet()
jobs, done = p.enter(("jobs", float)), p.enter(("done", str))
while True:
    (s,) = jobs.observe()
    time.sleep(s)
    done.move((socket.gethostname(),))
"""


def test_a_vanished_host_is_noticed_and_its_tasks_reported_failed(hosts, home):
    (home / "bag.py").write_text(SLEEPY_BAG)
    (home / "sleepy.py").write_text(SLEEPY)
    with LiveRun(home, "bag.py", HOME=str(home), PSHOSTS=str(home / "hosts")) as run:
        try:
            deadline = time.monotonic() + 30
            while sum(1 for c in run.snapshot("clients") if c["running"]) != 3:
                assert time.monotonic() < deadline
                time.sleep(0.2)
            victim = hosts.by_name("pst-h2")
            victim.cut_off()  # the link goes down ...
            for pid in victim_pids(victim.netns):  # ... and everything on the host dies
                os.kill(pid, 9)
            start = time.monotonic()
            while True:
                clients = {c["host"]: c for c in run.snapshot("clients")}
                if not clients["pst-h2"]["alive"]:
                    break
                assert time.monotonic() - start < 15, clients
                time.sleep(0.2)
            detected = time.monotonic() - start
            assert detected <= 10
            assert clients["pst-h1"]["alive"] and clients["pst-h3"]["alive"]
            lost = [t for t in run.snapshot("tasks") if t["host"] == "pst-h2"]
            assert lost and all(t["state"] == "failed" for t in lost)
            assert "no heartbeat" in lost[0]["stderr_tail"] or "connection lost" in lost[0]["stderr_tail"]
            print(f"dead host detected after {detected:.1f} s")
            assert run.manage("stop").returncode == 0
            run.proc.wait(60)
        finally:
            hosts.by_name("pst-h2").restore()


def victim_pids(netns: str) -> list[int]:
    """Processes running inside a host, except its sshd listener (the host is 'down', not gone)."""
    out = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True).stdout.split()
    pids = []
    for pid in map(int, out):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"pastset" in cmd:
            pids.append(pid)
    return pids


def test_blocked_caller_learns_of_an_unreachable_server_in_bounded_time(hosts, tmp_path, monkeypatch):
    host = hosts[0]
    server = host.popen(
        [
            sys.executable,
            "-m",
            "pastset.commands.server",
            "--run",
            "far",
            "--host",
            host.address,
            "--port",
            "0",
            "--ready",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        address = server.stdout.readline().decode().split()[1]
        monkeypatch.setenv("PSDEADTIME", "4")
        import pastset

        element = pastset.PastSet(run="far", ns=address).enter(("far", int))
        errors: list[Exception] = []

        def block() -> None:
            try:
                element.observe()
            except pastset.PastSetConnectionError as err:
                errors.append(err)

        import threading

        t = threading.Thread(target=block, daemon=True)
        t.start()
        time.sleep(0.5)
        host.cut_off()  # no reset will ever arrive: only keepalive can tell
        start = time.monotonic()
        t.join(30)
        took = time.monotonic() - start
        assert len(errors) == 1 and "lost the connection" in str(errors[0])
        assert took < 15
        print(f"unreachable server reported after {took:.1f} s")
    finally:
        host.restore()
        server.stdin.close()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_the_secret_is_on_no_command_line_and_the_run_listens_only_where_the_hosts_reach_it(hosts, home, tmp_path):
    """Every process of the run, here and on each host (the hosts share this /proc), is read while
    the run is live: the run's secret is in none of their command lines, and every socket they
    listen on here is on the address the hosts reach (or loopback, for the status page), never on
    all interfaces."""
    started, go = tmp_path / "run", tmp_path / "go"
    (home / "waiter.py").write_text(
        "import os, pathlib, socket, time, pastset\n"
        "pastset.PastSet().enter(('up', str)).move((socket.gethostname(),))\n"
        f"while not os.path.exists({str(go)!r}):\n    time.sleep(0.05)\n"
    )
    app = home / "secretapp.py"
    app.write_text(
        "import os, pathlib, pastset\n"
        "p = pastset.PastSet()\n"
        "for _ in range(3):\n    p.spawn('waiter.py')\n"
        "up = sorted(p.enter(('up', str)).observe()[0] for _ in range(3))\n"
        f"pathlib.Path({str(started)!r}).write_text(os.environ['PSRUN'])\n"
        "print(up)\n"
    )
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PS")}
    environ.update(HOME=str(home), PSHOSTS=str(home / "hosts"), XDG_RUNTIME_DIR=str(runtime))
    run = subprocess.Popen(
        [sys.executable, "-m", "pastset.commands.run", str(app)],
        env=environ,
        cwd=home,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while not started.exists():
            assert run.poll() is None and time.monotonic() < deadline, run.communicate()[1][-3000:]
            time.sleep(0.05)
        run_id = started.read_text()
        (record,) = [json.loads(p.read_text()) for p in runtime.rglob(f"{run_id}.json")]
        secret = record["secret"]
        assert len(secret) >= 16
        processes = run_processes(run_id)
        remote = [cmd for _, cmd in processes if "pastset.commands.remote" in cmd or "waiter.py" in cmd]
        assert len(remote) >= 3, processes  # the run's processes on the hosts are among those read
        assert [cmd for _, cmd in processes if secret in cmd] == []
        listening = listening_sockets({pid for pid, _ in processes} | {run.pid})
        reached = {port for address, port in listening if address == hosts.gateway_address}
        assert len(reached) >= 2, listening  # the name server and daemon, the channel
        assert {address for address, _ in listening} <= {hosts.gateway_address, "127.0.0.1"}, listening
        go.write_text("")
        out, err = run.communicate(timeout=90)
        assert run.returncode == 0, err[-3000:]
        assert out.strip() == str([h.name for h in hosts])
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    assert wait_until_gone(lambda: run_processes(run_id)) == []
