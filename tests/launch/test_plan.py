"""A run's plan before anything starts: its id, the application file, its wiring and where its clients go.

The Run object built from these is tests/launch/test_run.py; here each of
:mod:`pastset.launch.plan`'s functions is checked on its own, with the batch
system's variables of this process set or removed by monkeypatch.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest

from pastset.errors import AppNotFoundError, ConfigurationError
from pastset.launch.plan import find_app, new_run_id, new_wiring, place_clients
from pastset.settings import Settings


@pytest.fixture(autouse=True)
def no_batch_job(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith(("SLURM_", "SLURMD_", "PBS_")) or key == "PSCLIENTNUMBER":
            monkeypatch.delenv(key)


def test_a_run_id_names_this_host_and_process_and_is_hard_to_guess() -> None:
    host = socket.gethostname().split(".")[0]
    run_id = new_run_id()
    assert re.fullmatch(rf"{re.escape(host)}-{os.getpid()}-[0-9a-f]{{8}}", run_id)
    assert new_run_id() != run_id


def test_an_app_is_found_as_given_or_in_psbin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "master.py").write_text("")
    monkeypatch.chdir(tmp_path / "bin")
    assert find_app("master.py", []) == tmp_path / "bin" / "master.py", "a relative path, made absolute"
    monkeypatch.chdir(tmp_path)
    assert find_app("master.py", [str(tmp_path / "bin")]) == tmp_path / "bin" / "master.py"


def test_an_app_not_found_suggests_a_close_name_or_how_to_point_at_it(tmp_path: Path) -> None:
    (tmp_path / "master.py").write_text("")
    psbin = [str(tmp_path), str(tmp_path / "other")]
    with pytest.raises(AppNotFoundError, match="did you mean master.py") as caught:
        find_app("mastr.py", psbin)
    assert f"PSBIN ({os.pathsep.join(psbin)})" in str(caught.value)
    with pytest.raises(AppNotFoundError, match="give its path or set PSBIN to its directory"):
        find_app("zzz.py", psbin)


def test_the_wiring_gets_a_fresh_secret_and_the_apps_folder_in_psbin_once(tmp_path: Path) -> None:
    app = tmp_path / "apps" / "master.py"
    wiring = new_wiring("r1", ["/bin1"], app)
    assert wiring.run == "r1" and wiring.psbin == ("/bin1", str(app.parent))
    assert len(wiring.secret) >= 32 and re.fullmatch(r"[A-Za-z0-9_-]+", wiring.secret), "URL-safe"
    assert new_wiring("r1", ["/bin1"], app).secret != wiring.secret
    assert new_wiring("r1", [str(app.parent)], app).psbin == (str(app.parent),)
    assert new_wiring("r1", ["/bin1"], None).psbin == ("/bin1",)
    assert wiring.ns == "" and wiring.task == "", "the name server is learnt later"


def test_without_hosts_every_client_is_local() -> None:
    settings = Settings.load(environ={"PSPROCS": "3"}, files=[])
    assert place_clients(settings) == ("ssh", ["localhost"] * 3, [])
    local = Settings.load(environ={"PSPROCS": "2", "PSLAUNCH": "local", "PSHOSTS": "/nowhere"}, files=[])
    assert place_clients(local) == ("local", ["localhost", "localhost"], []), "local ignores the hosts file"


def test_with_ssh_the_hosts_file_places_the_clients(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("h1 slots=2\nh2\n")
    every_slot = Settings.load(environ={"PSHOSTS": str(hosts)}, files=[])
    assert place_clients(every_slot) == ("ssh", ["h1", "h1", "h2"], []), "PSPROCS unset: one client a slot"
    counted = Settings.load(environ={"PSHOSTS": str(hosts), "PSPROCS": "4"}, files=[])
    assert place_clients(counted)[1] == ["h1", "h1", "h2", "h1"]


def test_in_a_slurm_job_its_layout_places_the_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_JOB_ID", "9")
    monkeypatch.setenv("SLURM_JOB_NODELIST", "n[1-2]")
    monkeypatch.setenv("SLURM_TASKS_PER_NODE", "2(x2)")
    launcher, nodes, slots = place_clients(Settings.load(environ={"PSLAUNCH": "srun"}, files=[]))
    assert launcher == "srun" and nodes == slots == ["n1", "n1", "n2", "n2"]
    launcher, nodes, slots = place_clients(Settings.load(environ={"PSLAUNCH": "srun", "PSPROCS": "1"}, files=[]))
    assert nodes == ["n1"] and slots == ["n1", "n1", "n2", "n2"], "PSPROCS counts; the job's slots stay"


def test_in_a_pbs_job_its_node_file_places_the_clients(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nodefile = tmp_path / "nodes"
    nodefile.write_text("p1\np1\np2\n")
    monkeypatch.setenv("PBS_JOBID", "5.srv")
    monkeypatch.setenv("PBS_NODEFILE", str(nodefile))
    pbsdsh = tmp_path / "bin" / "pbsdsh"  # only looked for on PATH, never run
    pbsdsh.parent.mkdir()
    pbsdsh.write_text("#!/bin/sh\nexit 1\n")
    pbsdsh.chmod(0o755)
    monkeypatch.setenv("PATH", f"{pbsdsh.parent}{os.pathsep}{os.environ['PATH']}")
    launcher, nodes, slots = place_clients(Settings.load(environ={"PSLAUNCH": "pbsdsh"}, files=[]))
    assert launcher == "pbsdsh" and nodes == slots == ["p1", "p1", "p2"]


def test_asking_for_srun_outside_a_job_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="not a SLURM allocation"):
        place_clients(Settings.load(environ={"PSLAUNCH": "srun"}, files=[]))
