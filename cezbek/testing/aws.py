"""A local AWS for tests: moto in server mode, a real process that speaks AWS's HTTP APIs (S3, SES, …).

Registered from the root conftest.py as a pytest plugin. Nothing here needs Django.

- `aws_server` (session): starts `moto_server` on a free port of 127.0.0.1 the first time a test asks
  for it, waits until it answers, points every boto3 client at it through the environment
  (`AWS_ENDPOINT_URL`, fake credentials, a region; no real profile, credentials file or session
  token can leak in), and stops it, restoring the environment, when the session ends.
- `aws` (function): the same server with its state emptied first (buckets, objects, identities,
  sent emails), so tests never see each other's.

Both give an `AwsEmulator`: `endpoint_url`, `region`, `client("s3")`, `data("ses")` (moto's view of
a service's state, e.g. the emails SES accepted) and `reset()`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REGION = "us-east-1"
ACCESS_KEY_ID = "testing"
SECRET_ACCESS_KEY = "testing"
START_TIMEOUT_SECONDS = 30.0
START_ATTEMPTS = 3  # a free port can be taken between choosing it and the server binding it

# Set for the session; the unset ones (None) are removed so that nothing real is used.
ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
    "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_SESSION_TOKEN": None,
    "AWS_SECURITY_TOKEN": None,
    "AWS_PROFILE": None,
    "AWS_DEFAULT_PROFILE": None,
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}


@dataclass
class AwsEmulator:
    """A running moto server."""

    endpoint_url: str
    region: str = REGION
    process: subprocess.Popen | None = field(default=None, repr=False)

    def client(self, service: str):
        """A boto3 client for `service` talking to this server."""
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
        )

    def data(self, service: str) -> dict:
        """moto's own record of a service's state (`data("ses")["Message"]`: the emails it accepted)."""
        with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/data.json", timeout=10) as response:
            return json.load(response).get(service, {})

    def reset(self) -> None:
        """Forget everything: every bucket, object, identity and sent email."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            if response.status != 200:
                raise RuntimeError(f"moto server reset answered {response.status}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_command(port: int) -> list[str]:
    script = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which("moto_server")
    if script:
        return [script, "-H", "127.0.0.1", "-p", str(port)]
    return [sys.executable, "-c", "from moto.server import main; main()", "-H", "127.0.0.1", "-p", str(port)]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/moto-api/", timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def start_moto_server(log_path: Path) -> AwsEmulator:
    """Starts moto_server on a free port and returns once it answers HTTP; raises with its log otherwise."""
    for _ in range(START_ATTEMPTS):
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                _server_command(port), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline and process.poll() is None:
            if _answers(url):
                return AwsEmulator(endpoint_url=url, process=process)
            time.sleep(0.1)
        stop_moto_server(process)
    tail = log_path.read_text(errors="replace")[-2000:]
    raise RuntimeError(
        f"moto_server did not answer within {START_TIMEOUT_SECONDS:.0f} s ({START_ATTEMPTS} tries); its log:\n{tail}"
    )


def stop_moto_server(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="session")
def aws_server():
    """moto_server for the whole session, with boto3's environment pointing at it."""
    with tempfile.TemporaryDirectory(prefix="cezbek-moto-") as tmp:
        emulator = start_moto_server(Path(tmp) / "moto_server.log")
        with pytest.MonkeyPatch.context() as env:
            for name, value in {**ENVIRONMENT, "AWS_ENDPOINT_URL": emulator.endpoint_url}.items():
                if value is None:
                    env.delenv(name, raising=False)
                else:
                    env.setenv(name, value)
            try:
                yield emulator
            finally:
                stop_moto_server(emulator.process)


@pytest.fixture
def aws(aws_server):
    """The session's moto server, emptied before this test."""
    aws_server.reset()
    return aws_server
