"""TLS for a run: Pyro5's own SSL, switched on with PYRO_SSL=1 and the PYRO_SSL_* variables.

pastset adds no TLS of its own.  Pyro5 reads PYRO_SSL, PYRO_SSL_SERVERCERT,
PYRO_SSL_CACERTS, ... from the environment, and pypsrun hands every PYRO_*
variable to every process of a run, so one setting encrypts all of them.
This module checks those settings before anything listens or connects, so that
a missing file or a key that does not fit its certificate is one
:class:`~pastset.errors.ConfigurationError` naming the variable and the fix,
not a traceback or a misleading "cannot reach the server".

It also makes the server do each TLS handshake in the connection's own thread.
Pyro5 wraps the listening socket, so by default ``accept`` itself performs the
handshake, in the one thread that accepts every connection: a single
connection that never completes a handshake (a port scan, a stray ``nc``)
would stop the run from accepting anyone else, and its server from stopping.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Callable
from typing import Any

import Pyro5.socketutil
from Pyro5 import config as pyro_config

from pastset.errors import ConfigurationError

__all__ = ["check_client", "check_server", "enabled", "hint"]


def enabled() -> bool:
    """True if Pyro5's TLS is on (PYRO_SSL) in this process."""
    return bool(pyro_config.SSL)


class _HandshakeInConnectionThread(ssl.SSLSocket):
    """A listening TLS socket whose ``accept`` leaves the handshake to the first read.

    The first read happens in the thread Pyro5 gives the connection, so a client
    that stalls its handshake holds up that thread only.
    """

    def accept(self) -> tuple[Any, Any]:
        self.do_handshake_on_connect = False
        return super().accept()


def check_server() -> None:
    """With TLS on, make the server's TLS context now, or raise ConfigurationError saying why not.

    Pyro5 caches the context, so the daemon made afterwards uses this one.
    """
    if not enabled():
        return
    cfg = pyro_config
    if not cfg.SSL_SERVERCERT:
        raise ConfigurationError(
            "PYRO_SSL is on but PYRO_SSL_SERVERCERT is not set: the server needs a certificate; set "
            "PYRO_SSL_SERVERCERT (and PYRO_SSL_SERVERKEY) to its PEM files, or unset PYRO_SSL"
        )
    _need_file("PYRO_SSL_SERVERCERT", cfg.SSL_SERVERCERT)
    _need_file("PYRO_SSL_SERVERKEY", cfg.SSL_SERVERKEY)
    _need_file("PYRO_SSL_CACERTS", cfg.SSL_CACERTS, directory=True)
    if cfg.SSL_REQUIRECLIENTCERT and not cfg.SSL_CACERTS:
        raise ConfigurationError(
            "PYRO_SSL_REQUIRECLIENTCERT is on but PYRO_SSL_CACERTS is not set: set it to the CA "
            "certificate that signed the clients' certificates (otherwise any publicly signed one would do)"
        )
    trial = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    _load_chain(trial, "PYRO_SSL_SERVER", cfg.SSL_SERVERCERT, cfg.SSL_SERVERKEY, cfg.SSL_SERVERKEYPASSWD)
    _load_cas(trial, cfg.SSL_CACERTS)
    context = Pyro5.socketutil.get_ssl_context(
        servercert=cfg.SSL_SERVERCERT,
        serverkey=cfg.SSL_SERVERKEY,
        keypassword=cfg.SSL_SERVERKEYPASSWD,
        cacerts=cfg.SSL_CACERTS,
    )
    context.sslsocket_class = _HandshakeInConnectionThread


def check_client() -> None:
    """With TLS on, make this process's client TLS context now, or raise ConfigurationError saying why not."""
    if not enabled():
        return
    cfg = pyro_config
    if cfg.SSL_REQUIRECLIENTCERT and not cfg.SSL_CLIENTCERT:
        raise ConfigurationError(
            "PYRO_SSL_REQUIRECLIENTCERT is on, so every process of the run needs a client certificate: "
            "set PYRO_SSL_CLIENTCERT (and PYRO_SSL_CLIENTKEY) to its PEM files"
        )
    if cfg.SSL_CLIENTKEY and not cfg.SSL_CLIENTCERT:
        raise ConfigurationError("PYRO_SSL_CLIENTKEY is set but PYRO_SSL_CLIENTCERT is not: set both, or neither")
    _need_file("PYRO_SSL_CLIENTCERT", cfg.SSL_CLIENTCERT)
    _need_file("PYRO_SSL_CLIENTKEY", cfg.SSL_CLIENTKEY)
    _need_file("PYRO_SSL_CACERTS", cfg.SSL_CACERTS, directory=True)
    trial = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if cfg.SSL_CLIENTCERT:
        _load_chain(trial, "PYRO_SSL_CLIENT", cfg.SSL_CLIENTCERT, cfg.SSL_CLIENTKEY, cfg.SSL_CLIENTKEYPASSWD)
    _load_cas(trial, cfg.SSL_CACERTS)
    Pyro5.socketutil.get_ssl_context(
        clientcert=cfg.SSL_CLIENTCERT,
        clientkey=cfg.SSL_CLIENTKEY,
        keypassword=cfg.SSL_CLIENTKEYPASSWD,
        cacerts=cfg.SSL_CACERTS,
    )


def hint(err: Exception, host: str = "") -> str:
    """What to check when connecting to the server (at ``host``) failed in TLS; "" if not about TLS."""
    text = str(err)
    if not enabled():
        if any(sign in text for sign in ("not enough data", "connection lost", "reset by peer")):
            return "if the server uses TLS, set PYRO_SSL=1 and the other PYRO_SSL_* variables here as well"
        return ""
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return (
            "the server's TLS certificate was not accepted: PYRO_SSL_CACERTS must name the CA certificate "
            f"that signed it, and its subjectAltName must list the address connected to{f' ({host})' if host else ''}"
        )
    if "WRONG_VERSION_NUMBER" in text or "wrong version number" in text:
        return "the server does not use TLS: set PYRO_SSL=1 for every process of the run, or for none"
    if "certificate required" in text or "EOF occurred" in text or "connection lost" in text:
        return (
            "the server ended the TLS connection: if it requires client certificates "
            "(PYRO_SSL_REQUIRECLIENTCERT), set PYRO_SSL_CLIENTCERT and PYRO_SSL_CLIENTKEY to one signed by its "
            "PYRO_SSL_CACERTS"
        )
    return ""


# ------------------------------------------------------------------ helpers
def _need_file(name: str, path: str, directory: bool = False) -> None:
    if not path:
        return
    if os.path.isfile(path) or (directory and os.path.isdir(path)):
        if os.access(path, os.R_OK):
            return
        raise ConfigurationError(f"{name}={path!r} cannot be read by this user: check its permissions")
    where = "" if os.path.isabs(path) else f" (relative to {os.getcwd()}; better give an absolute path)"
    raise ConfigurationError(f"{name}={path!r}: no such file{where}; set {name} to a PEM file that exists here")


def _load_chain(context: ssl.SSLContext, prefix: str, cert: str, key: str, password: str) -> None:
    def no_password() -> str:
        raise ConfigurationError(f"{prefix}KEY is encrypted: set {prefix}KEYPASSWD to its passphrase")

    # A callback instead of None, so OpenSSL never prompts on a terminal (and never waits there).
    secret: str | Callable[[], str] = password or no_password
    try:
        context.load_cert_chain(cert, key or None, secret)
    except ConfigurationError:
        raise
    except (OSError, ValueError) as err:  # ssl.SSLError is an OSError
        keyfile = f"{prefix}KEY={key!r}" if key else f"the key in {prefix}CERT (no {prefix}KEY set)"
        raise ConfigurationError(
            f"{prefix}CERT={cert!r} and {keyfile} cannot be used together ({_reason(err)}): they must be a "
            f"PEM certificate and its own private key (with {prefix}KEYPASSWD if the key is encrypted)"
        ) from None


def _load_cas(context: ssl.SSLContext, cacerts: str) -> None:
    if not cacerts:
        return
    try:
        if os.path.isdir(cacerts):
            context.load_verify_locations(capath=cacerts)
        else:
            context.load_verify_locations(cafile=cacerts)
    except (OSError, ValueError) as err:
        raise ConfigurationError(
            f"PYRO_SSL_CACERTS={cacerts!r} cannot be used ({_reason(err)}): it must be a PEM file of CA "
            "certificates (or a directory prepared with openssl rehash)"
        ) from None


def _reason(err: Exception) -> str:
    text = getattr(err, "strerror", None) or str(err)
    return re.sub(r"\s*\(_ssl\.c:\d+\)", "", text)
