"""A live status page for a run, served over HTTP with the standard library only.

With PSWEB set (``PORT`` or ``HOST:PORT``; port 0: any free port) the server
process of a run also serves one self-contained page — inline CSS and script,
nothing fetched from elsewhere — showing the run's nodes, tasks, elements and
progress, refreshed by polling ``GET /api/status`` (the scheduler's snapshot
plus :func:`~pastset.server.overview.status_of`).  It binds 127.0.0.1 unless
PSWEB names a host.

Everything needs the run's secret: the page and ``/api/status`` (hosts, pids,
task arguments and templates are nobody else's business) as well as
``POST /api/pause|resume|stop``.  As in Jupyter, the link carrying the secret
(``/?token=SECRET``, written to ``RUN.web``, mode 0600, next to the run files;
the log names that file) is used once: the reply sets an HttpOnly,
SameSite=Strict cookie named after the port, and the page removes the token
from the address bar and history with ``history.replaceState``.  Later requests
carry the cookie; control requests must also carry the ``X-PastSet-Control``
header (or the secret itself in ``X-PastSet-Token``, for scripts), which a
cross-site page cannot send without a CORS preflight that is never granted.
Without the secret every request gets 403, and so does everyone when the run has
no secret.  The secret is never logged (the access log drops query strings, and
the logging filter of :func:`pastset.settings.configure_logging` scrubs any
other line) and never in a reply body.  A connection that does not complete its
request within :data:`TIMEOUT` seconds is closed, so partial requests cannot
hold the page's threads.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import socket
import threading
import time
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from pastset.runs import runs_dir
from pastset.server.host import SchedulerService, Server
from pastset.server.overview import clients_of, elements_of, status_of, tasks_of, waiting_of

__all__ = ["StatusPage", "start_web", "web_address"]

log = logging.getLogger(__name__)

ACTIONS = ("pause", "resume", "stop")
LOOPBACK = ("127.0.0.1", "localhost", "::1")
HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
#: seconds a connection may take to send a request (a partial one is cut off then)
TIMEOUT = 10.0
ROUTES = {
    "/": ("GET", "HEAD"),
    "/index.html": ("GET", "HEAD"),
    "/api/status": ("GET", "HEAD"),
    "/timeline.svg": ("GET", "HEAD"),
}
POLICY = "default-src 'none'; connect-src 'self'; img-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'"


def web_address(setting: str) -> tuple[str, int]:
    """PSWEB as (host, port): ``PORT`` binds loopback, ``HOST:PORT`` binds HOST."""
    host, _, port = setting.strip().rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, page: StatusPage, address: tuple[str, int]) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.page = page
        super().__init__(address, _Handler)


class StatusPage:
    """The status page of one run: an HTTP server in a daemon thread."""

    def __init__(
        self,
        service: SchedulerService,
        secret: str,
        host: str = "127.0.0.1",
        port: int = 0,
        timeout: float = TIMEOUT,
    ) -> None:
        self.service = service
        self.secret = secret
        self.timeout = timeout
        self.host = host
        self.httpd = _HTTPServer(self, (host, port))
        self.port = int(self.httpd.server_address[1])
        self.link_file: Path | None = None
        self._timeline: tuple[str, bytes] | None = None
        self._timeline_lock = threading.Lock()
        #: Host headers accepted (None: any): bound to loopback, a DNS-rebinding page must not reach the run
        self.hosts = [f"{h}:{self.port}" for h in ("127.0.0.1", "localhost", "[::1]")] if host in LOOPBACK else None
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.5,), name="status-page", daemon=True)

    @property
    def url(self) -> str:
        """The page's address (without the secret)."""
        host = socket.gethostname() if self.host in ("", "0.0.0.0", "::") else self.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}/"

    def start(self) -> StatusPage:
        """Serve in the background."""
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and remove the control link file."""
        if self._thread.is_alive():
            self.httpd.shutdown()
        self.httpd.server_close()
        if self.link_file is not None:
            self.link_file.unlink(missing_ok=True)
            self.link_file = None

    def write_link(self, run: str) -> Path | None:
        """Write the control link (page URL with the secret) to ``RUN.web``, readable by this user only."""
        folder = runs_dir()
        path, tmp = folder / f"{run}.web", folder / f".{run}.web.tmp"
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp.unlink(missing_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(f"{self.url}?token={quote(self.secret, safe='')}\n")
            tmp.replace(path)
        except OSError as err:
            log.warning("cannot write the status page's control link to %s: %s", path, err)
            return None
        self.link_file = path
        return path

    @property
    def cookie(self) -> str:
        """The name of the cookie holding the secret (cookies ignore ports: one per page)."""
        return f"pastset-{self.port}"

    def allowed(self, token: str) -> bool:
        """True if ``token`` is the run's secret (never, when the run has none)."""
        return bool(self.secret) and hmac.compare_digest(token.encode(), self.secret.encode())

    def status(self) -> dict[str, Any]:
        """The snapshot of the run, its clients flattened, and the one-screen status."""
        snap = self.service.snapshot()
        return {
            **snap,
            "clients": clients_of(snap),
            "tasks": tasks_of(snap),
            "elements": elements_of(snap),
            "waiting": waiting_of(snap),
            "status": status_of(snap),
        }

    def timeline(self) -> bytes:
        """The run report's task timeline (SVG), drawn again only when a task changed."""
        snap = self.service.snapshot()
        key = json.dumps([(t["id"], t["state"], t["client"]) for t in snap["tasks"]] + [len(snap["clients"])])
        with self._timeline_lock:
            if self._timeline is None or self._timeline[0] != key:
                from pastset.report import timeline_svg  # plotting loads with the first timeline asked for

                self._timeline = (key, timeline_svg(snap).encode())
            return self._timeline[1]

    def control(self, action: str) -> dict[str, Any]:
        """Pause, resume or stop the run (the caller checked the token)."""
        if action == "stop":
            self.service.stop(f"the run was stopped from the status page at {time.strftime('%H:%M:%S')}")
        else:
            getattr(self.service, action)("")
        return {"ok": True, "action": action, "state": status_of(self.status())["state"]}

    def html(self) -> bytes:
        """The page (only ever served to holders of the secret, so with its control buttons)."""
        return PAGE.replace("__CONTROL__", "true").encode()

    def to_json(self, data: Any) -> bytes:
        """``data`` as JSON, with the secret scrubbed should any program have printed it."""
        text = json.dumps(data, default=str)
        return (text.replace(self.secret, "(secret)") if self.secret else text).encode()


def _without_query(text: str) -> str:
    """A request line (or path) with its query string cut off."""
    head, sep, rest = text.partition("?")
    if not sep:
        return text
    tail = rest.rpartition(" ")
    return f"{head}?(query) {tail[2]}" if tail[1] else f"{head}?(query)"


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"

    def version_string(self) -> str:
        return "pastset"

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.page.timeout)  # a partial request is cut off, not awaited forever

    def _cookie_token(self) -> str:
        jar = SimpleCookie()
        try:
            jar.load(self.headers.get("Cookie", ""))
        except CookieError:
            return ""
        morsel = jar.get(self.server.page.cookie)
        return unquote(morsel.value) if morsel is not None else ""

    def log_message(self, format: str, *args: Any) -> None:
        # The request line may carry ?token=SECRET: log the path alone (the log filter scrubs anything else).
        args = tuple(_without_query(a) if isinstance(a, str) else a for a in args)
        log.debug("status page: %s " + format, self.address_string(), *args)

    def _route(self) -> None:
        page, method, (path, query) = self.server.page, self.command, urlsplit(self.path)[2:4]
        try:
            length = self.headers.get("Content-Length", "0").strip()
            if not length.isdigit() or int(length) > 1 << 16:
                return self._json(400, {"error": "bad or too large request body"}, {"Connection": "close"})
            self.rfile.read(int(length))  # a body we do not use
            if page.hosts and self.headers.get("Host", page.hosts[0]) not in page.hosts:
                return self._json(403, {"error": "unexpected Host header"})
            allow = ROUTES.get(path) or (("POST",) if path.removeprefix("/api/") in ACTIONS else ())
            if not allow:
                return self._json(404, {"error": f"not found: {path}"})
            if method not in allow:
                return self._json(
                    405, {"error": f"method not allowed; use {' or '.join(allow)}"}, {"Allow": ", ".join(allow)}
                )
            link = parse_qs(query).get("token", [""])[0]
            by_link = method != "POST" and path != "/api/status" and page.allowed(link)
            if not (by_link or page.allowed(self.headers.get("X-PastSet-Token", "") or self._cookie_token())):
                if link or self.headers.get("X-PastSet-Token") or method == "POST":
                    what = path.removeprefix("/api/").strip("/") or "the page"
                    log.warning("status page: refused %s from %s: no valid token", what, self.address_string())
                reason = "this needs the run's secret" if page.secret else "the run has no secret, so the page is off"
                if method == "POST" or path == "/api/status":
                    return self._json(403, {"error": f"forbidden: {reason}"})
                body = FORBIDDEN.replace("__REASON__", reason).encode()
                return self._send(403, "text/html; charset=utf-8", body, {"Content-Security-Policy": POLICY})
            if path == "/api/status":
                return self._json(200, page.status())
            if path == "/timeline.svg":
                return self._send(200, "image/svg+xml", page.timeline(), {"Content-Security-Policy": POLICY})
            if method != "POST":
                extra = {"Content-Security-Policy": POLICY}
                if by_link:  # as Jupyter does: the secret moves from the address into a cookie
                    extra["Set-Cookie"] = (
                        f"{page.cookie}={quote(page.secret, safe='')}; HttpOnly; SameSite=Strict; Path=/"
                    )
                return self._send(200, "text/html; charset=utf-8", page.html(), extra)
            action = path.removeprefix("/api/")
            if not self.headers.get("X-PastSet-Token") and self.headers.get("X-PastSet-Control") != "1":
                return self._json(403, {"error": "forbidden: control requests need the X-PastSet-Control header"})
            log.info("status page: %s asked by %s", action, self.address_string())
            return self._json(200, page.control(action))
        except (BrokenPipeError, ConnectionResetError):
            return None
        except Exception:
            log.exception("status page: error serving %s %s", method, path)
            return self._json(500, {"error": "internal error; see the server's log"})

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = _route  # noqa: N815 - http.server's names

    def _json(self, code: int, data: Any, extra: dict[str, str] | None = None) -> None:
        self._send(code, "application/json", self.server.page.to_json(data), extra or {})

    def _send(self, code: int, ctype: str, body: bytes, extra: dict[str, str]) -> None:
        self.send_response(code)
        for key, value in {**HEADERS, "Content-Type": ctype, "Content-Length": str(len(body)), **extra}.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def start_web(server: Server, setting: str, secret: str) -> StatusPage | None:
    """Serve the status page of the server's (first) run with a scheduler, as PSWEB says; None if not possible."""
    if not server.schedulers:
        log.warning("PSWEB is set but this server runs no scheduler, so there is no status page")
        return None
    run, scheduler = next(iter(server.schedulers.items()))
    try:
        host, port = web_address(setting)
        page = StatusPage(SchedulerService(scheduler), secret, host, port)
    except (OSError, ValueError) as err:
        log.warning("PSWEB=%s: cannot serve the status page: %s", setting, getattr(err, "strerror", None) or err)
        return None
    link = page.write_link(run) if secret else None
    page.start()
    where = f"the control link, with the run's secret, is in {link}" if link else "view only: no control link"
    log.warning("status page: %s ; %s", page.url, where)
    return page


FORBIDDEN = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>PastSet run: forbidden</title></head><body>
<h1>Forbidden</h1><p>__REASON__. Open the control link pypsrun wrote to <code>RUN.web</code> next to the
run files (the run's log names it).</p></body></html>
"""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>PastSet run</title><style>
:root{--bg:#f5f6f8;--fg:#1c232b;--mute:#6b7480;--line:#dde1e6;--ok:#2e8b57;--warn:#d18f00;--bad:#c0392b}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,sans-serif;background:var(--bg);color:var(--fg)}
header{display:flex;align-items:center;gap:12px;padding:12px 24px;background:#fff;border-bottom:1px solid var(--line)}
h1{font-size:18px;margin:0}h2{font-size:15px;margin:20px 0 6px}main{padding:0 24px 24px}#error{color:var(--bad)}
h1 span,td.mono{font-family:ui-monospace,monospace;font-weight:500}#controls{margin-left:auto;display:flex;gap:8px}
#state{padding:2px 10px;border-radius:10px;color:#fff;font:600 12px system-ui;text-transform:uppercase;
background:var(--mute)}#state.running{background:var(--ok)}#state.paused{background:var(--warn)}
#state.stopped{background:var(--bad)}button{font:inherit;padding:5px 16px;border:1px solid #b8c0ca;border-radius:6px;
background:#fff;cursor:pointer}button:hover:enabled{background:#eef1f5}button:disabled{opacity:.4;cursor:default}
#stop{color:var(--bad);border-color:var(--bad)}.bar{height:20px;background:#e3e7ec;border-radius:10px;overflow:hidden;
display:flex}.bar div{transition:width .3s}#bar-done{background:var(--ok)}#bar-failed{background:var(--bad)}
#stats{display:flex;flex-wrap:wrap;gap:4px 20px;margin:8px 0;color:var(--mute)}#stats b{color:var(--fg)}
table{border-collapse:collapse;background:#fff;border:1px solid var(--line);min-width:50%}th,td{padding:4px 10px;
border-bottom:1px solid var(--line);text-align:left;white-space:nowrap}th{background:#eef1f5;font-size:11px;
text-transform:uppercase;color:var(--mute)}td.number{text-align:right;font-variant-numeric:tabular-nums}
tr.failed td{background:#fdecea}tr.dead td{color:var(--mute)}summary{cursor:pointer;color:var(--bad)}
pre{margin:4px 0;white-space:pre-wrap;max-width:70em;font-size:12px}.note{color:var(--mute);font-size:12px}
#timeline{display:block;max-width:100%}
</style></head><body>
<header><h1>PastSet run <span id="run"></span></h1><span id="state">loading</span><span id="error"></span>
<div id="controls" hidden><button id="pause">Pause</button><button id="resume">Resume</button>
<button id="stop">Stop</button></div></header>
<main><h2>Progress</h2><div class="bar"><div id="bar-done"></div><div id="bar-failed"></div></div><div id="stats"></div>
<h2>Nodes</h2><table id="nodes"></table><h2>Tasks</h2><img id="timeline" alt="timeline of the tasks per client">
<table id="tasks"></table><p class="note" id="tasks-note"></p>
<h2>Elements</h2><table id="elements"></table>
<h2>Waiting</h2><table id="waiting"></table><p class="note" id="waiting-note"></p></main>
<script>
"use strict";
const CONTROL = __CONTROL__;
if (location.search) history.replaceState(null, "", location.pathname);  // the secret now lives in a cookie
const $ = id => document.getElementById(id), open = new Set(), last = {};
const fmt = v => Array.isArray(v) ? v.join(" ") : v === null || v === undefined ? "" : String(v);
let seen = false, state = "";
function table(id, columns, rows, decorate) {  // rebuilt only when its rows changed
  const key = JSON.stringify(rows);
  if (last[id] === key) return;
  last[id] = key;
  const head = document.createElement("thead"), body = document.createElement("tbody"), hr = head.insertRow();
  for (const c of columns) hr.appendChild(document.createElement("th")).textContent = c;
  for (const r of rows) {
    const tr = body.insertRow();
    for (const c of columns) Object.assign(tr.insertCell(), {textContent: fmt(r[c]), className: typeof r[c]});
    if (decorate) decorate(tr, r);
  }
  $(id).replaceChildren(head, body);
}
function task(tr, t) {  // a failed task's stderr: on hover, and expandable (kept open across refreshes)
  tr.className = t.state;
  if (t.state !== "failed" || !t.stderr_tail) return;
  const d = tr.cells[6].appendChild(document.createElement("details"));
  d.appendChild(document.createElement("summary")).textContent = "stderr";
  d.appendChild(document.createElement("pre")).textContent = tr.title = t.stderr_tail;
  d.open = open.has(t.id);
  d.ontoggle = () => d.open ? open.add(t.id) : open.delete(t.id);
}
function setState(s) {
  state = $("state").textContent = $("state").className = s;
  const on = {pause: s === "running", resume: s === "paused", stop: s === "running" || s === "paused"};
  for (const [id, yes] of Object.entries(on)) if ($(id)) $(id).disabled = !yes;
}
function render(d) {
  const s = d.status, total = d.tasks.length, done = s["tasks done"], failed = s["tasks failed"];
  $("run").textContent = d.run;
  document.title = "PastSet " + d.run + " \\u2013 " + s.state;
  setState(s.state);
  $("bar-done").style.width = (total ? 100 * done / total : 0) + "%";
  $("bar-failed").style.width = (total ? 100 * failed / total : 0) + "%";
  const stats = {"tasks done": done + "/" + total, running: s["tasks running"], queued: s["tasks queued"], failed,
    "moves/s": s["moves/s"], "observes/s": s["observes/s"], moves: d.moves, observes: d.observes,
    "nodes alive": s["clients alive"] + "/" + d.clients.length,
    elapsed: Math.max(0, Math.round(Date.now() / 1000 - d.started)) + " s"};
  $("stats").replaceChildren(...Object.entries(stats).map(([k, v]) => {
    const span = Object.assign(document.createElement("span"), {textContent: k + " "});
    span.dataset.stat = k;
    span.appendChild(document.createElement("b")).textContent = String(v);
    return span;
  }));
  table("nodes", ["id", "host", "cores", "speed", "alive", "running", "done"], d.clients,
        (tr, c) => { if (!c.alive) tr.className = "dead"; });
  const shown = d.tasks.filter((t, i) => t.state === "failed" || t.state === "running" || i >= total - 100);
  table("tasks", ["id", "app", "args", "host", "state", "status", "stderr", "waiting"], shown, task);
  $("tasks-note").textContent = shown.length < total ? "showing " + shown.length + " of " + total + " tasks" : "";
  const when = JSON.stringify(d.tasks.map(t => [t.id, t.state, t.client]).concat([d.clients.length]));
  if (total && last.timeline !== when) {  // redrawn by the server only when a task changed
    last.timeline = when;
    $("timeline").src = "timeline.svg?v=" + encodeURIComponent(String(d.tasks.length) + when.length + Date.now());
  }
  table("elements", ["id", "template", "first", "last", "delta", "stored", "waiting"], d.elements,
        (tr, e) => { tr.dataset.template = e.template; tr.cells[1].className = "mono"; });
  table("waiting", ["who", "op", "template", "element", "waited_s", "timeout"], d.waiting,
        (tr, w) => { tr.dataset.element = w.element; });
  $("waiting-note").textContent = d.waiting.length ? "" : "no operation is blocked";
}
async function refresh() {
  try {
    const r = await fetch("api/status", {cache: "no-store"});
    if (!r.ok) throw new Error("HTTP " + r.status);
    render(await r.json());
    seen = true;
    $("error").textContent = "";
  } catch (e) {
    if (seen) setState("disconnected");
    $("error").textContent = seen ? "the server has gone: the run is over" : "cannot reach the run: " + e.message;
  }
}
async function control(action) {
  if (action === "stop" && !confirm("Stop the run now? Running tasks are cut off.")) return;
  const r = await fetch("api/" + action, {method: "POST", headers: {"X-PastSet-Control": "1"}});
  const body = await r.json().catch(() => ({}));
  $("error").textContent = r.ok ? "" : body.error || "HTTP " + r.status;
  await refresh();
}
const loop = () => refresh().then(() => setTimeout(loop, state === "disconnected" ? 5000 : 500));
if (CONTROL) {
  $("controls").hidden = false;
  for (const a of ["pause", "resume", "stop"]) $(a).onclick = () => control(a);
} else $("controls").remove();
loop();
</script></body></html>
"""
