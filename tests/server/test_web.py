"""The status page (PSWEB) in a real headless Chromium: live progress, Pause/Resume/Stop for holders of the secret.

The browser is Debian's chromium driven through the system chromedriver
(tests/infra/apt-install.sh puts both in place; selenium never downloads
one).  All traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from conftest import processes_carrying, run_processes, wait_until_gone
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from pastset.core.scheduler import Scheduler
from pastset.core.space import Space
from pastset.runs import runs_dir
from pastset.server.host import SchedulerService, Server
from pastset.server.web import StatusPage, start_web, web_address
from pastset.settings import Settings

pytestmark = pytest.mark.timeout(120)

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
INSTALL = Path(__file__).resolve().parent.parent / "infra" / "apt-install.sh"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--no-proxy-server",
    "--window-size=1280,1000",
]

APP = """
import os, sys, pastset
n, s = int(sys.argv[1]), float(sys.argv[2])
print("RUN", os.environ["PSRUN"], file=sys.stderr, flush=True)
p = pastset.PastSet()
jobs, done = p.enter(("jobs", float)), p.enter(("done", int))
for i in range(n):
    jobs.move((s,))
p.spawn("broken.py", "input.dat")
for _ in range(2):
    p.spawn("worker.py")
for i in range(n):
    done.observe()
p.halt()
print("all", n, "jobs done", flush=True)
"""

WORKER = """
import time, pastset
p = pastset.PastSet()
jobs, done = p.enter(("jobs", float)), p.enter(("done", int))
while True:
    (s,) = jobs.observe()
    time.sleep(s)
    done.move((1,))
"""

BROKEN = """
import sys
sys.stderr.write(f"broken.py: cannot read {sys.argv[1]}\\n")
sys.exit(3)
"""

DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy: 127.0.0.1 only


def http(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, str]:
    """Status and body of one request, errors included."""
    data = b"" if method == "POST" else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with DIRECT.open(request, timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def wait_for(what: Callable[[], Any], timeout: float = 20, message: str = "") -> Any:
    """Poll ``what`` until it returns something true; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if value:
            return value
        assert time.monotonic() < deadline, message or f"timed out waiting for {what}"
        time.sleep(0.05)


class WebRun:
    """A pypsrun with PSWEB=0 in the background, run files in a private XDG_RUNTIME_DIR."""

    def __init__(
        self,
        folder: Path,
        monkeypatch: pytest.MonkeyPatch,
        jobs: int = 40,
        seconds: float = 0.25,
        **settings: str,
    ) -> None:
        (folder / "app.py").write_text(APP)
        (folder / "worker.py").write_text(WORKER)
        (folder / "broken.py").write_text(BROKEN)
        runtime = folder / "runtime"
        runtime.mkdir(mode=0o700)
        runtime.chmod(0o700)  # platformdirs accepts only a private XDG_RUNTIME_DIR
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))  # so runs_dir() here finds the run's files
        env = {k: v for k, v in os.environ.items() if not k.startswith("PS")}
        env.update(PSPROCS="2", PSWEB="0", XDG_RUNTIME_DIR=str(runtime), **settings)
        self.out, self.err = folder / "out.txt", folder / "err.txt"
        with self.out.open("w") as out, self.err.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pastset.commands.run", "app.py", str(jobs), str(seconds)],
                env=env,
                cwd=folder,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        try:
            self.run_id = wait_for(self._run_id, 30, "the app did not start")
            self.link = runs_dir() / f"{self.run_id}.web"
            self.control_url = wait_for(lambda: self.link.is_file() and self.link.read_text().strip(), 10)
        except BaseException:
            self.close()
            raise
        self.url = self.control_url.split("?")[0]
        self.secret = self.control_url.split("?token=")[1]

    def _run_id(self) -> str:
        assert self.proc.poll() is None, self.err.read_text()
        return next((line.split()[1] for line in self.err.read_text().splitlines() if line.startswith("RUN ")), "")

    def element(self, name: str) -> dict:
        """The run's element whose template names ``name``, from ``pypsmanage elements``."""
        listing = subprocess.run(
            [sys.executable, "-m", "pastset.commands.manage", "elements", "--json", "--run", self.run_id],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert listing.returncode == 0, listing.stderr
        (row,) = [e for e in json.loads(listing.stdout) if f"'{name}'" in e["template"]]
        return row

    def close(self) -> None:
        """End pypsrun if it still runs; its server and clients must follow through their lifelines.

        Whatever of the run is still there after 10 s is ended (only processes of
        this very run), and then reported: a leftover is a failure, not tidied away.
        """
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        run_id = getattr(self, "run_id", "")
        if run_id:
            left = wait_until_gone(lambda: run_processes(run_id))
            for pid, _ in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            assert left == [], f"processes of run {run_id} outlived pypsrun: {left}"


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WebRun]:
    """A run logging at debug level to stderr and to PSLOGPATH (run.log)."""
    live = WebRun(tmp_path, monkeypatch, PSLOGLEVEL="debug", PSLOGPATH=str(tmp_path / "run.log"))
    try:
        yield live
    finally:
        live.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    """Headless Chromium with a fresh profile, ended with everything it started."""
    installed = subprocess.run(
        ["sh", str(INSTALL), "chromium", "chromium-driver"], capture_output=True, text=True, timeout=900
    )
    assert installed.returncode == 0, f"{INSTALL} failed:\n{installed.stdout}{installed.stderr}"
    profile = tmp_path_factory.mktemp("chromium-profile")
    options = Options()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    service = Service(executable_path=CHROMEDRIVER, log_output=str(profile.parent / "chromedriver.log"))
    driver = None
    try:
        driver = webdriver.Chrome(service=service, options=options)
        driver.set_page_load_timeout(20)
        yield driver
    finally:
        if driver is not None:
            driver.quit()
        if service.process is not None and service.process.poll() is None:
            service.process.kill()
            service.process.wait()
        for pid, _ in processes_carrying(f"--user-data-dir={profile}"):  # only this profile's browser
            os.kill(pid, signal.SIGKILL)


def page_state(driver: WebDriver) -> str:
    return driver.execute_script("return document.getElementById('state').textContent")


def page_done(driver: WebDriver) -> int:
    """The 'last' column of the ('done', int) element as the page shows it (-1: not shown yet)."""
    text = driver.execute_script(
        "const r = [...document.querySelectorAll('#elements tbody tr')]"
        "  .find(r => r.dataset.template.includes(\"'done'\"));"
        "return r ? r.cells[3].textContent : '-1';"
    )
    return int(text)


def stat_text(driver: WebDriver, name: str) -> str:
    return driver.execute_script(f"return document.querySelector('[data-stat=\"{name}\"] b').textContent")


def test_control_page_shows_progress_pauses_and_resumes_the_run(browser, run, tmp_path):
    assert stat.S_IMODE(run.link.stat().st_mode) == 0o600
    assert urlsplit(run.url).hostname == "127.0.0.1"
    browser.get(run.control_url)
    wait_for(lambda: page_state(browser) == "running", message="page never showed the run running")
    assert browser.find_element(By.ID, "run").text == run.run_id
    assert browser.current_url == run.url and run.secret not in browser.current_url  # history.replaceState
    [cookie] = [c for c in browser.get_cookies() if c["name"] == f"pastset-{urlsplit(run.url).port}"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["value"] == run.secret
    assert run.secret not in browser.execute_script("return document.cookie")  # HttpOnly: no script reads it
    browser.refresh()  # the cookie alone opens the page now
    wait_for(lambda: page_state(browser) == "running", message="the page did not come back after a reload")
    first = wait_for(lambda: max(page_done(browser), 0) >= 2 and page_done(browser), message="no progress shown")
    wait_for(lambda: page_done(browser) > first, message="the done count on the page did not increase")
    wait_for(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#nodes tbody tr")) == 2)
    wait_for(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#tasks tr.running")) == 2)
    rows = browser.find_elements(By.CSS_SELECTOR, "#tasks tbody tr")
    assert len(rows) == 3 and all("worker.py" in r.text for r in rows[1:])
    assert stat_text(browser, "tasks done") == "0/3" and stat_text(browser, "failed") == "1"
    assert float(stat_text(browser, "moves/s")) > 0
    broken = browser.find_element(By.CSS_SELECTOR, "#tasks tr.failed")  # its stderr: on hover, and expandable
    cells = [td.text for td in broken.find_elements(By.TAG_NAME, "td")]
    assert cells[1:3] == ["broken.py", "input.dat"] and cells[4:6] == ["failed", "3"]
    assert "cannot read input.dat" in broken.get_attribute("title")
    assert not broken.find_element(By.TAG_NAME, "pre").is_displayed()
    broken.find_element(By.TAG_NAME, "summary").click()
    assert "cannot read input.dat" in broken.find_element(By.TAG_NAME, "pre").text

    shot = tmp_path / "status-page.png"
    assert browser.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000

    pause, resume = browser.find_element(By.ID, "pause"), browser.find_element(By.ID, "resume")
    assert pause.is_displayed() and pause.is_enabled() and not resume.is_enabled()
    pause.click()
    wait_for(lambda: page_state(browser) == "paused", 5, "Pause did not pause")
    assert resume.is_enabled() and not pause.is_enabled()
    # the items in hand (0.25 s each) finish: every job taken is done, as the run's counters say ...
    held = wait_for(lambda: (t := run.element("jobs")["first"]) == run.element("done")["last"] and t, 20)
    wait_for(lambda: page_done(browser) == held, 10, "the page did not catch up")  # ... and the page shows it
    assert run.element("jobs")["first"] == held < 40, "work went on while paused"
    # Who waits on what: both workers wait in observe on the held jobs, the app on done.
    rows = "return [...document.querySelectorAll('#waiting tbody tr')].map(r => r.innerText)"  # read at once
    texts = wait_for(
        lambda: (found := browser.execute_script(rows)) and len(found) == 3 and found,
        10,
        "the Waiting table did not show the workers and the app",
    )
    assert sum("task t" in t and "observe" in t and "('jobs', float)" in t for t in texts) == 2, texts
    assert sum("app.py" in t and "observe" in t and "('done', int)" in t for t in texts) == 1, texts
    assert run.element("jobs")["first"] == held, "work went on while paused"
    assert "jobs done" not in run.out.read_text() and run.proc.poll() is None

    resume.click()
    wait_for(lambda: page_done(browser) > held or run.proc.poll() is not None, 5, "Resume did not resume")
    assert run.proc.wait(60) == 0, run.err.read_text()
    assert "all 40 jobs done" in run.out.read_text()
    wait_for(lambda: page_state(browser) in ("ended", "disconnected"), 10, "the page missed the end of the run")
    assert not run.link.exists()  # the control link goes with the run
    wait_for(lambda: not run_processes(run.run_id), 10, "processes of the run were left behind")
    log_file = tmp_path / "run.log"
    assert stat.S_IMODE(log_file.stat().st_mode) == 0o600
    for text in (log_file.read_text(), run.err.read_text()):  # debug logging, access log included
        assert "status page: 127.0.0.1" in text and "GET /?(query)" in text and "/api/status" in text
        assert run.secret not in text


def test_without_the_secret_nothing_is_shown_and_control_is_refused(browser, run):
    cookie = {"Cookie": f"pastset-{urlsplit(run.url).port}={run.secret}"}
    for url in (run.url, run.url + "?token=wrong"):
        browser.get(url)
        assert "Forbidden" in browser.find_element(By.TAG_NAME, "h1").text
        assert browser.find_elements(By.TAG_NAME, "button") == [] and browser.find_elements(By.ID, "state") == []
    for headers in ({}, {"X-PastSet-Token": "wrong"}, {"X-PastSet-Token": run.secret[:-1]}):
        for action in ("pause", "resume", "stop"):
            code, body = http(run.url + "api/" + action, "POST", headers)
            assert code == 403 and "forbidden" in json.loads(body)["error"]
        code, body = http(run.url + "api/status", headers=headers)  # hosts, pids, arguments: not for others
        assert code == 403 and "forbidden" in json.loads(body)["error"] and run.run_id not in body
        code, body = http(run.url, headers=headers)
        assert code == 403 and "CONTROL" not in body and run.run_id not in body
    assert http(run.url + "api/status?token=" + run.secret)[0] == 403  # the link opens the page, nothing else
    code, body = http(run.url + "api/pause", "POST", cookie)  # a cookie alone cannot steer: a form could send it
    assert code == 403 and "X-PastSet-Control" in body
    for headers in ({"X-PastSet-Token": run.secret}, cookie):
        code, body = http(run.url + "api/status", headers=headers)
        assert code == 200 and run.secret not in body
        data = json.loads(body)
        assert data["run"] == run.run_id and data["status"]["state"] == "running" and len(data["clients"]) == 2
    assert {"host", "cores", "speed", "alive", "running", "done"} <= set(data["clients"][0])
    assert {"template", "first", "last", "delta", "stored"} <= set(data["elements"][0])
    code, body = http(run.url, headers=cookie)
    assert code == 200 and run.secret not in body and "CONTROL = true" in body
    assert http(run.url + "nothing")[0] == 404 and "error" in json.loads(http(run.url + "nothing")[1])
    assert http(run.url + "api/pause")[0] == 405 and http(run.url + "api/status", "POST")[0] == 405
    assert http(run.url + "api/status", headers={"Host": "rebound.example", **cookie})[0] == 403
    assert not json.loads(http(run.url + "api/status", headers=cookie)[1])["paused"]  # nothing paused or stopped
    code, body = http(run.url + "api/stop", "POST", {"X-PastSet-Control": "1", **cookie})
    assert code == 200 and json.loads(body)["state"] == "stopped" and run.secret not in body
    assert run.proc.wait(30) != 0
    log = run.err.read_text()
    assert "status page: http://127.0.0.1:" in log and run.secret not in log
    assert "refused pause" in log and "stopped from the status page" in log


def test_stop_button_ends_the_run_after_confirmation(browser, run):
    browser.get(run.control_url)
    wait_for(lambda: page_done(browser) >= 1, message="no progress shown")
    browser.find_element(By.ID, "stop").click()
    WebDriverWait(browser, 5).until(expected_conditions.alert_is_present())
    browser.switch_to.alert.dismiss()  # "Cancel": nothing happens, the work goes on
    before = run.element("done")["last"]
    wait_for(lambda: run.element("done")["last"] > before, 20, "the run did not go on after Cancel")
    assert page_state(browser) == "running" and run.proc.poll() is None
    browser.find_element(By.ID, "stop").click()
    WebDriverWait(browser, 5).until(expected_conditions.alert_is_present())
    browser.switch_to.alert.accept()
    wait_for(lambda: page_state(browser) in ("stopped", "disconnected"), 10, "Stop did not stop the run")
    assert run.proc.wait(30) != 0
    assert "stopped from the status page" in run.err.read_text()
    assert "jobs done" not in run.out.read_text()
    wait_for(lambda: not run_processes(run.run_id), 10, "processes of the run were left behind")


def test_a_run_without_a_secret_shows_nothing_and_is_never_steered(tmp_path):
    scheduler = Scheduler(Space("nosecret", [str(tmp_path)]), check_apps=False)
    page = StatusPage(SchedulerService(scheduler), secret="").start()
    try:
        for token in ("", "anything"):
            code, body = http(page.url + "api/pause", "POST", {"X-PastSet-Token": token, "X-PastSet-Control": "1"})
            assert code == 403 and "no secret" in body
            assert http(page.url + "api/status", headers={"X-PastSet-Token": token})[0] == 403
        code, body = http(page.url + "?token=")
        assert code == 403 and "no secret" in body
        assert http(page.url, "HEAD")[0] == 403 and http(page.url, "PUT")[0] == 405
        with socket.create_connection(("127.0.0.1", page.port), timeout=5) as sock:  # a body it must not wait for
            sock.sendall(b"POST /api/pause HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Length: -1\r\n\r\n" % page.port)
            assert sock.recv(100).startswith(b"HTTP/1.1 400")
        assert not scheduler.snapshot()["paused"]
    finally:
        page.close()
        scheduler.end()


def test_a_partial_request_is_cut_off_and_holds_nothing(tmp_path):
    scheduler = Scheduler(Space("partial", [str(tmp_path)]), check_apps=False)
    page = StatusPage(SchedulerService(scheduler), secret="s3cret", timeout=0.5).start()
    try:
        with socket.create_connection(("127.0.0.1", page.port), timeout=60) as sock:
            sock.sendall(b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1")  # and never the rest
            assert sock.recv(100) == b""  # the page closed it (without the timeout: blocked until ours)
        headers = {"X-PastSet-Token": "s3cret"}
        assert http(page.url + "api/status", headers=headers)[0] == 200  # and still serves others
    finally:
        page.close()
        scheduler.end()


def test_start_web_needs_a_scheduler_and_a_free_port_and_cleans_up(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    tmp_path.chmod(0o700)
    server = Server(Settings(PSBIN=str(tmp_path)))
    try:
        assert start_web(server, "0", "s3cret") is None and "no scheduler" in caplog.text
        server.open("webrun", scheduler=True)
        page = start_web(server, "0", "s3cret")
        assert page is not None and page.link_file == runs_dir() / "webrun.web"
        assert stat.S_IMODE(page.link_file.stat().st_mode) == 0o600
        assert page.link_file.read_text() == f"http://127.0.0.1:{page.port}/?token=s3cret\n"
        assert "s3cret" not in caplog.text and f"status page: http://127.0.0.1:{page.port}/ " in caplog.text
        assert start_web(server, str(page.port), "s3cret") is None and "cannot serve" in caplog.text
        link = page.link_file
        page.close()
        assert not link.exists()
        with pytest.raises(urllib.error.URLError):
            DIRECT.open(page.url, timeout=5)
    finally:
        server.stop()
        server.close()


def test_psweb_values():
    assert web_address("0") == ("127.0.0.1", 0)
    assert web_address("8080") == ("127.0.0.1", 8080)
    assert web_address("0.0.0.0:9000") == ("0.0.0.0", 9000)
    assert web_address("[::1]:0") == ("::1", 0)
