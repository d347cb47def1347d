"""TLS through Pyro5's SSL settings: a whole run encrypted, TLS on the wire, client
certificates enforced, a stalled handshake harmless, and misconfiguration named."""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import Pyro5.core
import Pyro5.protocol
import Pyro5.serializers
import pytest
from conftest import (
    EXAMPLES,
    RunningServer,
    listening_sockets,
    processes_carrying,
    run_processes,
    start_server,
    stop_server,
)

pytestmark = pytest.mark.timeout(120)

SECRET = "tls-test-secret"
#: a TLS server ending a handshake without a client certificate: the alert, or the closed socket if that wins
REFUSED = "(?i)certificate.required|handshake.failure|EOF occurred in violation of protocol"


# ------------------------------------------------------------ certificates
@dataclass
class Certs:
    """A throwaway CA with a server and a client certificate signed by it (PEM files)."""

    folder: Path

    def path(self, name: str) -> str:
        return str(self.folder / name)

    def env(self, client_cert: bool = False, **extra: str) -> dict[str, str]:
        """PYRO_* settings for a TLS run (with a client certificate if asked)."""
        env = {
            "PYRO_SSL": "1",
            "PYRO_SSL_SERVERCERT": self.path("server.crt"),
            "PYRO_SSL_SERVERKEY": self.path("server.key"),
            "PYRO_SSL_CACERTS": self.path("ca.crt"),
        }
        if client_cert:
            env.update(PYRO_SSL_CLIENTCERT=self.path("client.crt"), PYRO_SSL_CLIENTKEY=self.path("client.key"))
        env.update(extra)
        return env


#: openssl x509 -extfile lines of each certificate the CA signs
LEAF = "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nsubjectKeyIdentifier=hash\n"
LEAF += "authorityKeyIdentifier=keyid\n"
USES = {
    "server": "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
    "client": "extendedKeyUsage=clientAuth\n",
}


def _openssl(folder: Path) -> None:
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=30)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-days", "2", "-subj", "/CN=pastset test CA", "-keyout", "ca.key", "-out", "ca.crt",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    for name, uses in USES.items():
        (folder / f"{name}.ext").write_text(LEAF + uses)
        run("req", "-new", *ec, "-subj", f"/CN=pastset test {name}", "-keyout", f"{name}.key", "-out", f"{name}.csr")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.crt")  # fmt: skip


def _cryptography(folder: Path) -> None:
    pytest.importorskip("cryptography", reason="neither the openssl command nor the cryptography package is here")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def write(name: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        pem, pkcs8 = serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8
        (folder / f"{name}.key").write_bytes(key.private_bytes(pem, pkcs8, serialization.NoEncryption()))
        (folder / f"{name}.crt").write_bytes(cert.public_bytes(pem))

    def named(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder(named("pastset test CA"), named("pastset test CA"), ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    write("ca", ca_key, ca)
    for name, usage in (("server", ExtendedKeyUsageOID.SERVER_AUTH), ("client", ExtendedKeyUsageOID.CLIENT_AUTH)):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder(ca.subject, named(f"pastset test {name}"), key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        )
        if name == "server":
            alt = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        write(name, key, builder.sign(ca_key, hashes.SHA256()))


def make_certs(folder: Path) -> Certs:
    """A CA, server and client certificates in ``folder``: openssl if present, else cryptography."""
    folder.mkdir()
    if shutil.which("openssl"):
        _openssl(folder)
    else:
        _cryptography(folder)
    return Certs(folder)


@pytest.fixture
def certs(tmp_path: Path) -> Iterator[Certs]:
    """Certificates in this test's tmp_path; afterwards no process that was given them is left."""
    made = make_certs(tmp_path / "tls")
    try:
        yield made
    finally:
        marker = str(made.folder)  # in the environment of every process of the test's runs
        deadline = time.monotonic() + 10
        while processes_carrying(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = processes_carrying(marker)
        for pid, _ in left:  # ours: they carry this test's certificate paths
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        assert left == []


@pytest.fixture
def tls_server(certs: Certs, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningServer]:
    """A TLS server process (with a scheduler and the test secret), stopped afterwards."""
    for key, value in certs.env().items():
        monkeypatch.setenv(key, value)  # start_server hands this environment on
    server = start_server(certs.folder, secret=SECRET)
    try:
        yield server
    finally:
        stop_server(server)


# --------------------------------------------------------------- helpers
def pypsrun(app: Path, *args: str, procs: int = 1, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("PS", "PYRO_"))}
    environ.update(PSPROCS=str(procs), **env)
    return subprocess.run(
        [sys.executable, "-m", "pastset.commands.run", str(app), *args],
        env=environ,
        cwd=app.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )


def pyro_connect(secret: str = SECRET) -> bytes:
    """The bytes of a Pyro5 connect request for the name server, as a pastset proxy sends it."""
    serializer = Pyro5.serializers.serializers["msgpack"]
    data = serializer.dumps({"handshake": {"secret": secret, "task": ""}, "object": Pyro5.core.NAMESERVER_NAME})
    return Pyro5.protocol.SendingMessage(Pyro5.protocol.MSG_CONNECT, 0, 1, serializer.serializer_id, data).data


def address(server: RunningServer) -> tuple[str, int]:
    host, _, port = server.address.rpartition(":")
    return host, int(port)


def tls_context(certs: Certs, client_cert: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=certs.path("ca.crt"))
    context.verify_flags |= ssl.VERIFY_X509_STRICT  # the default from Python 3.13 on
    if client_cert:
        context.load_cert_chain(certs.path("client.crt"), certs.path("client.key"))
    return context


def listening_ports(pid: int) -> list[int]:
    """TCP ports process ``pid`` listens on (from /proc)."""
    return sorted(port for _, port in listening_sockets({pid}))


def join_run(server: RunningServer, env: dict[str, str]) -> subprocess.CompletedProcess:
    """A separate program that joins the server's run with ``env`` as its PYRO_* settings."""
    environ = {k: v for k, v in server.env(PSSECRET=SECRET).items() if not k.startswith("PYRO_")}
    environ.update(env)
    code = "import pastset\np = pastset.PastSet()\ne = p.enter(('tls', int))\ne.move((7,))\nprint(e.observe())\n"
    return subprocess.run(
        [sys.executable, "-c", code], env=environ, cwd=server.psbin, capture_output=True, text=True, timeout=60
    )


# ----------------------------------------------------------------- tests
@pytest.mark.parametrize(
    ("example", "args", "procs", "expected"),
    [
        ("simple.py", [], 1, r"0 1\n\(42, 3\.14\)\n1 1\n\Z"),
        ("mcpiserver.py", ["2", "20", "100000"], 2, r"Pi is found as 3\.1\d* with 2 worker\(s\), 20 bag\(s\) .*\n\Z"),
    ],
    ids=["simple", "mcpi"],
)
def test_a_whole_run_is_encrypted(certs, example, args, procs, expected):
    result = pypsrun(EXAMPLES / example, *args, procs=procs, **certs.env())
    assert result.returncode == 0, result.stderr
    assert re.match(expected, result.stdout), result.stdout
    # That every port of a run speaks TLS is read from its sockets: test_every_listening_socket_of_a_run_speaks_tls.


def test_every_listening_socket_of_a_run_speaks_tls(certs, tmp_path):
    """Read from the sockets, not the log: each port a process of the run listens on does a TLS handshake
    checked against the test CA, and answers a Pyro connect only inside TLS."""
    go, started = tmp_path / "go", tmp_path / "run"
    app = tmp_path / "app.py"
    app.write_text(
        "import os, pathlib, time, pastset\n"
        "p = pastset.PastSet()\n"
        "e = p.enter(('tls', int)); e.move((1,)); e.observe()\n"
        f"pathlib.Path({str(started)!r}).write_text(os.environ['PSRUN'])\n"
        f"while not os.path.exists({str(go)!r}):\n    time.sleep(0.05)\n"
        "p.halt()\n"
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("PS", "PYRO_"))}
    environ.update(PSPROCS="1", **certs.env())
    run = subprocess.Popen(
        [sys.executable, "-m", "pastset.commands.run", str(app)],
        env=environ,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not started.exists():
            assert run.poll() is None and time.monotonic() < deadline, run.communicate()[1]
            time.sleep(0.05)
        run_id = started.read_text()
        ports = sorted({port for pid, _ in run_processes(run_id) for port in listening_ports(pid)})
        ports += [p for p in listening_ports(run.pid) if p not in ports]
        assert ports, "the run listens nowhere?"
        for port in ports:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                with tls_context(certs).wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                    assert tls.version() in ("TLSv1.2", "TLSv1.3"), port
        go.write_text("")
        assert run.wait(60) == 0, run.communicate()[1]
    finally:
        if run.poll() is None:
            os.killpg(run.pid, 9)
            run.wait()


def test_the_server_speaks_only_tls(certs, tls_server):
    host, port = address(tls_server)
    # Nothing but the Pyro5 daemon listens: the direct channel is off under TLS.
    assert listening_ports(tls_server.proc.pid) == [port]
    # In plain TCP a Pyro handshake, even with the right secret, gets no Pyro answer.
    with socket.create_connection((host, port), timeout=10) as plain:
        plain.sendall(pyro_connect())
        try:
            answer = plain.recv(64)
        except ConnectionResetError:
            answer = b""
    assert not answer.startswith(b"PYRO")
    # Through TLS, checked against the test CA, the same bytes get Pyro's answer.
    with socket.create_connection((host, port), timeout=10) as raw:
        with tls_context(certs).wrap_socket(raw, server_hostname=host) as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
            assert ("commonName", "pastset test server") in tls.getpeercert()["subject"][0]
            tls.sendall(pyro_connect())
            assert tls.recv(4) == b"PYRO"
    # A pastset program without TLS is refused; with the run's TLS settings it works.
    plain_client = join_run(tls_server, {"PYRO_SSL": "0"})
    assert plain_client.returncode == 1 and plain_client.stdout == ""
    assert "PastSetConnectionError: cannot reach the PastSet server" in plain_client.stderr
    tls_client = join_run(tls_server, certs.env())
    assert (tls_client.returncode, tls_client.stdout) == (0, "(7,)\n"), tls_client.stderr


def test_a_stalled_handshake_holds_up_no_one(certs, tls_server):
    host, port = address(tls_server)
    with socket.create_connection((host, port), timeout=10):  # connects, never says anything
        started = time.monotonic()
        joined = join_run(tls_server, certs.env())
        assert (joined.returncode, joined.stdout) == (0, "(7,)\n"), joined.stderr
        assert time.monotonic() - started < 10
        assert tls_server.proc.stdin is not None
        tls_server.proc.stdin.close()  # the lifeline: the server must stop by itself even now
        assert tls_server.proc.wait(10) == 0


def test_client_certificates_when_required(certs, monkeypatch):
    required = certs.env(client_cert=True, PYRO_SSL_REQUIRECLIENTCERT="1")
    result = pypsrun(EXAMPLES / "simple.py", **required)
    assert (result.returncode, result.stdout) == (0, "0 1\n(42, 3.14)\n1 1\n"), result.stderr

    for key, value in required.items():
        monkeypatch.setenv(key, value)
    server = start_server(certs.folder, secret=SECRET)
    try:
        host, port = address(server)
        with socket.create_connection((host, port), timeout=10) as raw:
            with pytest.raises(ssl.SSLError, match=REFUSED):
                with tls_context(certs).wrap_socket(raw, server_hostname=host) as tls:
                    tls.sendall(pyro_connect())
                    tls.recv(4)
        with socket.create_connection((host, port), timeout=10) as raw:
            with tls_context(certs, client_cert=True).wrap_socket(raw, server_hostname=host) as tls:
                tls.sendall(pyro_connect())
                assert tls.recv(4) == b"PYRO"
        # A program that has TLS but no certificate (and was not told one is required) is refused.
        without = {k: v for k, v in certs.env().items() if "CLIENT" not in k}
        refused = join_run(server, without)
        assert refused.returncode == 1 and refused.stdout == ""
        assert "PastSetConnectionError" in refused.stderr and re.search(REFUSED, refused.stderr), refused.stderr
        assert join_run(server, required).stdout == "(7,)\n"
    finally:
        stop_server(server)


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        pytest.param(
            {"PYRO_SSL_SERVERCERT": "missing.crt"},
            "PYRO_SSL_SERVERCERT='{dir}/missing.crt': no such file",
            id="cert-file",
        ),
        pytest.param({"PYRO_SSL_SERVERCERT": ""}, "PYRO_SSL is on but PYRO_SSL_SERVERCERT is not set", id="no-cert"),
        pytest.param({"PYRO_SSL_SERVERKEY": "ca.key"}, "PYRO_SSL_SERVERKEY='{dir}/ca.key' cannot be used", id="key"),
        pytest.param({"PYRO_SSL_CACERTS": "nope.crt"}, "PYRO_SSL_CACERTS='{dir}/nope.crt': no such file", id="ca-file"),
        pytest.param({"PYRO_SSL_CACERTS": "server.key"}, "PYRO_SSL_CACERTS='{dir}/server.key' cannot be used", id="ca"),
        pytest.param({"PYRO_SSL_CACERTS": ""}, "PYRO_SSL_CACERTS must name the CA certificate", id="untrusted"),
        pytest.param(
            {"PYRO_SSL_REQUIRECLIENTCERT": "1"}, "set PYRO_SSL_CLIENTCERT (and PYRO_SSL_CLIENTKEY)", id="client"
        ),
        pytest.param(
            {"PYRO_SSL_CLIENTCERT": "nope.crt"}, "PYRO_SSL_CLIENTCERT='{dir}/nope.crt': no such file", id="client-file"
        ),
    ],
)
def test_a_misconfigured_tls_run_names_the_setting(certs, settings, named):
    files = {k: certs.path(v) if v and not v.isdigit() else v for k, v in settings.items()}
    result = pypsrun(EXAMPLES / "simple.py", **certs.env(**files))
    assert result.returncode != 0 and result.stdout == ""
    assert named.format(dir=certs.folder) in result.stderr
    assert "Traceback" not in result.stderr
