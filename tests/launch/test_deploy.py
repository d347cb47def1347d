"""pypsdeploy and pypserase: the wheelhouse here, and real hosts (network namespaces, one sshd each).

The hosts share this machine's file system, so each host's deployment lands in
its own directory (named by the host's ``uname -n``) and is checked through
that host's own ssh.  The netns tests need root; ``tests/run`` installs sshd
(tests/infra/install-deps.sh).  The wheelhouse is built once for the module.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "infra"))

from conftest import EXAMPLES, processes_carrying
from netns_hosts import NetnsHosts

import pastset
from pastset.commands.deploy import erase_main, main
from pastset.launch.deploy import deployed_python
from pastset.launch.run import remote_command
from pastset.launch.wheelhouse import MANIFEST, Wheelhouse, build_wheelhouse
from pastset.settings import Settings

pytestmark = [pytest.mark.timeout(180)]

VERSION = pastset.__version__
STATUS = re.compile(r"^(?P<host>\S+)\s+(?P<state>ok|failed|skipped)\s+(?P<seconds>\d+\.\d) s  (?P<detail>.*)$")


@dataclass
class Status:
    state: str
    seconds: float
    detail: str


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Wheelhouse:
    return build_wheelhouse(tmp_path_factory.mktemp("wheels"))


@pytest.fixture(scope="module")
def hosts() -> Iterator[NetnsHosts]:
    with NetnsHosts(n=3, prefix=f"d{uuid.uuid4().hex[:5]}") as made:  # unique: another suite may run at once
        yield made


@pytest.fixture(scope="module")
def deployments(hosts: NetnsHosts, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Where the hosts put deployments: a temporary directory, never the real ``~/.local/share``.

    The hosts' shells log in as this machine's user, with its real home; inside each host's
    own mount namespace a temporary directory is mounted over its data directory, so what the
    tests deploy lands here, and the real ``~/.local/share/pastset/deploy`` is never touched.
    """
    shell = 'printf %s "${XDG_DATA_HOME:-$HOME/.local/share}"'
    data = Path(subprocess.run(hosts[0].ssh_argv(shell), capture_output=True, text=True, timeout=30).stdout)
    assert data.is_absolute(), data
    # A fresh machine may have no data directory yet: make it to mount on, and remove what was made.
    made = [d for d in [data, *data.parents] if not d.exists()]
    data.mkdir(parents=True, exist_ok=True)
    private = tmp_path_factory.mktemp("deploy-data")
    mounted = []
    try:
        for host in hosts:
            host.run(["mount", "--bind", str(private), str(data)])
            mounted.append(host)
        yield private / "pastset" / "deploy"  # the same directory, as this process sees it
    finally:
        for host in mounted:
            host.run(["umount", str(data)], check=False)
        for directory in made:  # deepest first, and only if still empty
            with contextlib.suppress(OSError):
                directory.rmdir()


@pytest.fixture(scope="module")
def seen_by_hosts(hosts: NetnsHosts, deployments: Path) -> Path:
    """The deployments directory as the hosts name it (their data directory, with ours mounted on it)."""
    shell = 'printf %s "${XDG_DATA_HOME:-$HOME/.local/share}"'
    data = Path(subprocess.run(hosts[0].ssh_argv(shell), capture_output=True, text=True, timeout=30).stdout)
    return data / "pastset" / "deploy"


@pytest.fixture
def home(hosts: NetnsHosts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME whose ~/.ssh/config reaches the hosts, and PSHOSTS naming them; no other PS* setting."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    shutil.copy(hosts.ssh_config, home / ".ssh" / "config")
    (home / "hosts").write_text("".join(f"{h.name}\n" for h in hosts))
    for key in [k for k in os.environ if k.startswith("PS")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PSHOSTS", str(home / "hosts"))
    return home


def command(capsys: pytest.CaptureFixture[str], entry, *args: str) -> tuple[int, dict[str, Status], str]:
    """Run pypsdeploy's or pypserase's main; its exit status, status lines by host, and all of stderr."""
    capsys.readouterr()
    code = entry(list(args))
    err = capsys.readouterr().err
    lines = {}
    for line in err.splitlines():
        match = STATUS.match(line)
        if match:
            lines[match["host"]] = Status(match["state"], float(match["seconds"]), match["detail"])
    return code, lines, err


def on_host(host, script: str) -> subprocess.CompletedProcess:
    return subprocess.run(host.ssh_argv(script), capture_output=True, text=True, timeout=60)


# ---------------------------------------------------------------- wheelhouse
def test_the_wheelhouse_holds_pastset_its_dependencies_and_pip(wheelhouse, tmp_path):
    assert wheelhouse.pastset.startswith(f"pastset-{VERSION}-") and wheelhouse.pip.startswith("pip-")
    names = {re.sub(r"[-_.]+", "-", w.split("-")[0]).lower() for w in wheelhouse.wheels}
    assert {"pastset", "pyro5", "msgpack", "paramiko", "platformdirs", "python-hostlist", "rich", "pip"} <= names
    assert {"serpent", "cryptography", "pynacl", "bcrypt", "cffi"} <= names  # and what they need in turn
    assert "pytest" not in names and "numpy" not in names  # extras are not shipped
    for name in wheelhouse.wheels:
        with zipfile.ZipFile(wheelhouse.path / name) as wheel:
            assert wheel.testzip() is None
            listed = wheel.namelist()
        assert any(n.endswith(".dist-info/RECORD") for n in listed)
        assert not any("__pycache__" in n for n in listed)
    assert Wheelhouse.load(wheelhouse.path) == wheelhouse  # the manifest brings it back
    again = build_wheelhouse(tmp_path / "again")
    assert again.digest == wheelhouse.digest  # the same installation: the same digest, so redeploys are skipped
    assert (tmp_path / "again" / MANIFEST).is_file()


def test_a_checkout_is_built_from_source_and_an_installation_packed_back():
    probe = "from pastset.launch.wheelhouse import source_tree; print(source_tree())"
    root = Path(__file__).resolve().parents[2]
    from_checkout = subprocess.run([sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, timeout=30)
    assert from_checkout.stdout.strip() == str(root), from_checkout.stderr
    installed = subprocess.run([sys.executable, "-c", probe], cwd="/", capture_output=True, text=True, timeout=30)
    assert installed.stdout.strip() == "None", installed.stderr


def test_remote_processes_prefer_the_deployed_environment(tmp_path):
    settings = Settings.load(environ={}, files=[])
    cmd = remote_command(settings, "client", "--run", "r1")
    assert cmd.index(deployed_python(VERSION)) < cmd.index(sys.executable)
    node = os.uname().nodename
    fake = tmp_path / ".local" / "share" / "pastset" / "deploy" / node / VERSION / "bin" / "python"
    fake.parent.mkdir(parents=True)
    fake.write_text('#!/bin/sh\necho "deployed python $*"\n')
    fake.chmod(0o755)
    env = {"HOME": str(tmp_path), "PATH": os.environ["PATH"]}
    ran = subprocess.run(["/bin/sh", "-c", cmd], env=env, capture_output=True, text=True, timeout=30)
    assert ran.stdout.strip() == "deployed python -m pastset.commands.remote client --run r1"
    explicit = Settings.load(environ={"PSPYTHON": "/opt/py/bin/python3"}, files=[])
    assert "pastset/deploy" not in remote_command(explicit, "client")


# --------------------------------------------------------------------- hosts
@pytest.mark.netns
def test_deploy_to_three_hosts_and_again_is_quick(hosts, home, wheelhouse, deployments, seen_by_hosts, capsys):
    assert command(capsys, erase_main)[0] == 0  # start from nothing
    code, status, err = command(capsys, main, "--wheelhouse", str(wheelhouse.path))
    assert code == 0, err
    assert sorted(status) == [h.name for h in hosts]
    for host in hosts:
        venv = seen_by_hosts / host.name / VERSION  # as the host names it
        assert status[host.name].state == "ok", err
        assert status[host.name].detail == f"installed pastset {VERSION} in {venv}"
        check = on_host(host, f"{venv}/bin/python -I -c 'import pastset, sys; print(pastset.__version__, sys.prefix)'")
        assert check.stdout.split() == [VERSION, str(venv)], check.stderr
        assert (deployments / host.name / VERSION / "bin").is_dir()  # it is in our temporary directory
        assert not (deployments / host.name / VERSION / "wheels").exists()  # the copied wheels are gone
    start = time.monotonic()
    code, status, err = command(capsys, main, "--wheelhouse", str(wheelhouse.path))
    took = time.monotonic() - start
    assert code == 0, err
    assert [s.detail.startswith("already there") for s in status.values()] == [True] * 3, err
    assert took < 10, f"a second deploy took {took:.1f} s"


@pytest.mark.netns
def test_pypsrun_runs_the_clients_with_the_deployed_python(hosts, home, wheelhouse, deployments, seen_by_hosts, capsys):
    assert command(capsys, main, "--wheelhouse", str(wheelhouse.path))[0] == 0
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PS")}
    environ.update(HOME=str(home), PSHOSTS=str(home / "hosts"), PSLOGLEVEL="info")
    result = subprocess.run(
        [sys.executable, "-m", "pastset.commands.run", str(EXAMPLES / "mcpiserver.py"), "3", "30", "20000"],
        env=environ,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stderr
    assert "Pi is found as 3.1" in result.stdout
    for host in hosts:  # each client logs the interpreter it runs its task with: its own sys.executable
        assert (deployments / host.name / VERSION / "bin" / "python").exists()
        python = seen_by_hosts / host.name / VERSION / "bin" / "python"
        assert f": {python} -m pastset.commands.runner mcpiclient.py" in result.stderr, result.stderr
    deadline = time.monotonic() + 10  # nothing of this run is left: not here (HOME) nor on the hosts
    mine = [str(seen_by_hosts / host.name) for host in hosts]  # host names unique to this module
    while left := processes_carrying(str(home)) + [p for m in mine for p in processes_carrying(m)]:
        assert time.monotonic() < deadline, f"processes left behind: {left}"
        time.sleep(0.1)


@pytest.mark.netns
def test_erase_removes_only_what_deploy_made_and_again_is_harmless(
    hosts, home, wheelhouse, deployments, seen_by_hosts, capsys
):
    assert command(capsys, main, "--wheelhouse", str(wheelhouse.path))[0] == 0
    foreign = deployments / hosts[0].name / "0.0.0-mine"
    foreign.mkdir(parents=True)
    try:
        code, status, err = command(capsys, erase_main, "--all")
        assert code == 0, err
        for host in hosts:
            venv = seen_by_hosts / host.name / VERSION
            assert status[host.name].state == "ok"
            assert status[host.name].detail.startswith(f"removed {venv}"), err
            assert on_host(host, f"test -e {venv}").returncode == 1
        assert (
            f"left {seen_by_hosts / foreign.relative_to(deployments)} (not made by pypsdeploy)"
            in status[hosts[0].name].detail
        )
        assert foreign.is_dir()
        assert not (deployments / hosts[1].name).exists()  # emptied folders go too
    finally:
        shutil.rmtree(foreign)
    code, status, err = command(capsys, erase_main)
    assert code == 0, err
    assert [s.state for s in status.values()] == ["ok"] * 3
    assert all(s.detail.startswith("nothing to remove") for s in status.values()), err


@pytest.mark.netns
def test_an_unreachable_host_fails_by_name_while_the_others_deploy(hosts, home, wheelhouse, deployments, capsys):
    (home / "hosts").write_text("localhost\n" + "".join(f"{h.name}\n" for h in hosts))
    assert command(capsys, erase_main)[0] == 0
    down = hosts[1]
    down.cut_off()
    try:
        code, status, err = command(capsys, main, "--wheelhouse", str(wheelhouse.path), "--timeout", "3")
    finally:
        down.restore()
    assert code == 1
    assert status["localhost"].state == "skipped"
    assert status[down.name].state == "failed"
    assert down.name in status[down.name].detail and "no answer within 3 s" in status[down.name].detail
    assert f"pypsdeploy: failed on {down.name}: host {down.name}" in err
    for host in (hosts[0], hosts[2]):
        assert status[host.name].state == "ok", err
        assert status[host.name].detail.startswith("installed"), err
        assert (deployments / host.name / VERSION / "bin" / "python").exists()
    assert not (deployments / down.name).exists()
    code, status, err = command(capsys, erase_main)
    assert code == 0, err
    assert status[hosts[0].name].detail.startswith("removed")
    assert not any((deployments / h.name).exists() for h in hosts)
