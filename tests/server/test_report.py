"""The run report of a real run, opened in a real headless Chromium.

A pi bag of tasks on 2 clients, with one task that fails, runs under pypsrun
with PSREPORT; the report must show, in the browser, every task on the client
that ran it (the failed one marked), both clients in the load balance, the
elements' counters over time, and what each worker took.  ``pypsmanage
report`` writes the same report again from the run's kept record.  The live
status page serves the same timeline.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EXAMPLES, run_processes
from selenium.webdriver.common.by import By
from test_web import WebRun, browser, http, wait_for  # noqa: F401 - browser is a fixture

from pastset.runs import load_record

pytestmark = pytest.mark.timeout(240)

APP = """
import os, runpy, sys
import pastset
print("RUN", os.environ["PSRUN"], file=sys.stderr, flush=True)
pastset.PastSet().spawn("broken.py", "input.dat")
sys.argv = ["mcpiserver.py", "2", "24", "30000"]
runpy.run_path("mcpiserver.py", run_name="__main__")
"""

BROKEN = """
import sys
sys.stderr.write("broken.py: cannot read " + sys.argv[1] + "\\n")
sys.exit(3)
"""


@pytest.fixture(scope="module")
def pi_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("pi-report")
    for name in ("mcpiserver.py", "mcpiclient.py"):
        shutil.copy(EXAMPLES / name, folder / name)
    (folder / "app.py").write_text(APP)
    (folder / "broken.py").write_text(BROKEN)
    report = folder / "pi.html"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PS")}
    env.update(PSPROCS="2", PSREPORT=str(report))
    done = subprocess.run(
        [sys.executable, "-m", "pastset.commands.run", "app.py"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    assert "Pi is found" in done.stdout
    run_id = re.search(r"^RUN (\S+)", done.stderr, re.M).group(1)
    wait_for(lambda: not run_processes(run_id), 10, "processes of the run were left behind")
    return {"folder": folder, "report": report, "run": run_id, "record": load_record(run_id)}


def _open(driver, path: Path) -> None:
    driver.get(path.as_uri())
    wait_for(lambda: driver.execute_script("return document.readyState") == "complete", 10)


def _shown(driver) -> dict:
    """What the browser shows of the report, read from its DOM."""
    return driver.execute_script(
        """
        const q = (s) => [...document.querySelectorAll(s)];
        const box = (e) => { const r = e.getBoundingClientRect(); return [r.width, r.height]; };
        const fill = (p) => {  // a plain colour, or a hatch pattern's colour marked as hatched
          const f = getComputedStyle(p).fill, m = f.match(/url\\("#(.+)"\\)/);
          return m ? getComputedStyle(document.getElementById(m[1]).querySelector('rect')).fill + " hatched" : f;
        };
        const summary = {};
        q('#summary dt').forEach(dt => summary[dt.textContent] = dt.nextElementSibling.textContent);
        return {
          summary,
          timeline: q('#timeline svg').map(box),
          bars: q('#timeline svg g[id^="task-"]').map(g => ({
              id: g.id.slice(5), fill: fill(g.querySelector('path')), size: box(g)})),
          timelineText: q('#timeline svg text').map(t => t.textContent).join('\\n'),
          balanceText: q('#balance svg text').map(t => t.textContent).join('\\n'),
          busyBars: q('#balance svg g[id^="busy"] path, #balance svg g[id^="busy"]').length,
          moves: q('#elements svg g[id^="moves-"]').map(g => g.id),
          elementsText: q('#elements svg text').map(t => t.textContent).join('\\n'),
          rows: q('#tasks tbody tr').map(tr => [...tr.cells].map(td => td.textContent)),
          resources: performance.getEntriesByType('resource').map(r => r.name),
        };
        """
    )


def test_the_report_of_a_pi_run_shows_where_each_task_ran_in_a_browser(browser, pi_run):  # noqa: F811
    record, report = pi_run["record"], pi_run["report"]
    text = report.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text), "the report loads something from outside"
    _open(browser, report)
    shown = _shown(browser)
    shot = pi_run["folder"] / "report.png"
    browser.set_window_size(1200, 2400)
    assert browser.save_screenshot(str(shot))

    assert shown["resources"] == [], "the report fetched resources"
    assert shown["summary"]["run"] == pi_run["run"]
    assert shown["summary"]["tasks"] == "3" and shown["summary"]["failed"] == "1" and shown["summary"]["clients"] == "2"
    assert float(shown["summary"]["speed-up over one client"]) > 0

    tasks = {t["id"]: t for t in record["tasks"]}
    assert set(tasks) == {"t1", "t2", "t3"}
    assert shown["timeline"] and all(w > 300 and h > 100 for w, h in shown["timeline"]), "no visible timeline"
    bars = {b["id"]: b for b in shown["bars"]}
    assert set(bars) == set(tasks), "the timeline does not carry every task of the run"
    assert all(b["size"][0] > 0 and b["size"][1] > 0 for b in bars.values())
    broken = next(t for t in tasks.values() if t["app"] == "broken.py")
    assert bars[broken["id"]]["fill"] == "rgb(192, 57, 43) hatched", "the failed task is not marked"
    assert all(not bars[t]["fill"].startswith("rgb(192, 57, 43)") for t in tasks if t != broken["id"])
    clients = {c["id"]: c["specs"]["host"] for c in record["clients"]}
    for cid, host in clients.items():
        assert f"{cid} on {host}" in shown["timelineText"], f"client {cid} is not on the timeline"
        assert f"{cid} on {host}" in shown["balanceText"], f"client {cid} is not in the load balance"
    assert "FAILED" in shown["timelineText"] and "mcpiclient.py" in shown["timelineText"]
    assert "% busy" in shown["balanceText"]

    assert shown["moves"], "no element counters over time"
    assert "('pi-jobs', int)" in shown["elementsText"] and "('pi-results', float)" in shown["elementsText"]

    rows = {r[0]: r for r in shown["rows"]}
    assert set(rows) == set(tasks)
    assert rows[broken["id"]][4] == "failed" and rows[broken["id"]][5] == "3"
    taken = [re.search(r"(\d+) on \('pi-jobs', int\)", rows[t][8]) for t in tasks if t != broken["id"]]
    assert sum(int(m.group(1)) for m in taken if m) == 24, "the bags each worker took do not add up to the 24 moved"
    for tid, row in rows.items():
        assert row[2] == tasks[tid]["client"], "the task table puts a task on the wrong client"


def test_pypsmanage_report_redraws_a_recorded_run(browser, pi_run, tmp_path):  # noqa: F811
    out = tmp_path / "again.html"
    done = subprocess.run(
        [sys.executable, "-m", "pastset.commands.manage", "report", pi_run["run"][:-2], "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert pi_run["run"] in done.stdout
    _open(browser, out)
    shown = _shown(browser)
    assert {b["id"] for b in shown["bars"]} == {t["id"] for t in pi_run["record"]["tasks"]}
    missing = subprocess.run(
        [sys.executable, "-m", "pastset.commands.manage", "report", "no-such-run", "-o", str(tmp_path / "x.html")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1 and "no recorded run named 'no-such-run'" in missing.stderr
    assert not (tmp_path / "x.html").exists()


def test_the_live_status_page_shows_the_task_timeline(browser, tmp_path, monkeypatch):  # noqa: F811
    run = WebRun(tmp_path, monkeypatch, jobs=120, seconds=0.25)
    try:
        browser.get(run.control_url)  # the page is for holders of the secret
        wait_for(
            lambda: browser.execute_script(
                "const i = document.getElementById('timeline'); return i && i.complete && i.naturalWidth > 300;"
            ),
            30,
            "the page shows no timeline",
        )
        holder = {"X-PastSet-Token": run.secret}
        assert http(run.url + "timeline.svg")[0] == 403, "the timeline is shown to anyone"
        status, svg = http(run.url + "timeline.svg", headers=holder)
        assert status == 200 and "<svg" in svg
        tasks = json.loads(http(run.url + "api/status", headers=holder)[1])["tasks"]
        for task in tasks:
            if task["started"]:
                assert f'id="task-{task["id"]}"' in svg, f"task {task['id']} is not on the live timeline"
        assert browser.find_element(By.ID, "timeline").get_attribute("src").startswith(run.url + "timeline.svg")
        assert run.proc.wait(120) == 0, run.err.read_text()
    finally:
        run.close()
