"""Real Redis servers for the tests: one redis-server, or a Redis Cluster, on loopback.

Debian's ``redis-server`` (``sh tests/infra/apt-install.sh redis-server``) is
started on free loopback ports with its files in a private directory, and
ended by pid (its own process group) when the test ends, also when it fails.
A cluster is made with ``redis-cli --cluster create``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

__all__ = ["RedisCluster", "RedisServer", "free_port", "start_cluster", "start_redis"]


def free_port() -> int:
    """A loopback TCP port nobody listens on now (redis-server cannot be told to pick one)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed; run: sh tests/infra/apt-install.sh redis-server")
    return found


@dataclass
class RedisServer:
    """One redis-server process started for a test."""

    proc: subprocess.Popen
    port: int
    directory: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port)

    def stop(self) -> None:
        """End the server by pid (its process group), and reap it."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(10)

    def kill(self) -> None:
        """SIGKILL the server now (a crash), leaving it reaped."""
        self.stop()


def _start_one(directory: Path, *extra: str) -> RedisServer:
    directory.mkdir(parents=True, exist_ok=True)
    for _attempt in range(5):
        port = free_port()
        cmd = [
            _binary("redis-server"),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(directory),
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
            *extra,
        ]
        log = open(directory / f"redis-{port}.log", "wb")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        server = RedisServer(proc, port, directory)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if server.client().ping():
                    return server
            except redis.ConnectionError:
                time.sleep(0.02)  # polling readiness of a process we just started
        server.stop()  # the port was taken meanwhile, or it failed: try another
    raise RuntimeError(f"redis-server did not start; see the logs in {directory}")


def start_redis(directory: Path) -> RedisServer:
    """One redis-server on a free loopback port."""
    return _start_one(directory)


@dataclass
class RedisCluster:
    """A Redis Cluster of ``masters`` primaries, each with ``replicas`` replicas."""

    nodes: list[RedisServer] = field(default_factory=list)

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:3])

    def primaries(self) -> list[RedisServer]:
        """The nodes that are primaries now (and alive)."""
        out = []
        for node in self.nodes:
            if node.proc.poll() is not None:
                continue
            try:
                if node.client().info("replication")["role"] == "master":
                    out.append(node)
            except redis.ConnectionError:
                continue
        return out

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def wait_ok(self, timeout: float = 60) -> None:
        """Block until every live node says the cluster is ok and every slot is served."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            live = [n for n in self.nodes if n.proc.poll() is None]
            try:
                if all(n.client().cluster("info")["cluster_state"] == "ok" for n in live):
                    return
            except redis.RedisError:
                pass
            time.sleep(0.1)  # polling the cluster's own state
        raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")


def start_cluster(directory: Path, masters: int = 3, replicas: int = 0, node_timeout_ms: int = 2000) -> RedisCluster:
    """Start ``masters * (1 + replicas)`` nodes and join them with ``redis-cli --cluster create``."""
    cluster = RedisCluster()
    try:
        for i in range(masters * (1 + replicas)):
            node_dir = directory / f"node{i}"
            cluster.nodes.append(
                _start_one(
                    node_dir,
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    str(node_dir / "nodes.conf"),
                    "--cluster-node-timeout",
                    str(node_timeout_ms),
                )
            )
        cmd = [
            _binary("redis-cli"),
            "--cluster",
            "create",
            *[f"127.0.0.1:{n.port}" for n in cluster.nodes],
            "--cluster-replicas",
            str(replicas),
            "--cluster-yes",
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {out.stdout[-2000:]} {out.stderr[-2000:]}")
        cluster.wait_ok()
        if replicas:
            _wait_replicas(cluster, masters * replicas)
        return cluster
    except BaseException:
        cluster.stop()
        raise


def _wait_replicas(cluster: RedisCluster, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        linked = 0
        for node in cluster.nodes:
            info = node.client().info("replication")
            if info["role"] == "slave" and info.get("master_link_status") == "up":
                linked += 1
        if linked >= count:
            return
        time.sleep(0.1)  # polling replication state
    raise RuntimeError("the cluster's replicas did not link up with their primaries")
