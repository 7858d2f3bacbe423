"""An S3-compatible server on this machine, for the book and the tests, and S3 settings.

``local_s3()`` starts moto's S3 server (a real HTTP API, written in Python) on 127.0.0.1 on
a free port, in a process of its own, and yields a ``LocalS3`` with its endpoint and the
``storage_options`` that s3fs needs to reach it.  With ``environ=True`` it also sets the
standard variables (``AWS_ENDPOINT_URL``, the credentials, the region) for as long as it
runs, so code written for a real endpoint (s3fs, ``howto add s3://…``, a repository in a
bucket) runs unchanged against it.  ``s3_storage_options()`` reads the same variables for
any endpoint: that is all a program needs to switch from the local server to a real one.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from .blocks.bucket import s3_storage_options
from .errors import HowtoError

#: Dummy credentials for the local server (it accepts any until ``require_credentials``).
LOCAL_KEY = "testing"
LOCAL_SECRET = "testing"
LOCAL_REGION = "us-east-1"

#: botocore >= 1.36 adds checksums that only AWS itself understands by default.
CHECKSUM_SETTINGS = {
    "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
    "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
}

STARTUP_SECONDS = 30


class ServerError(HowtoError):
    """The local S3 server could not be started."""


def hide_port(text: str) -> str:
    """``text`` with loopback addresses written without their (ephemeral) port."""
    import re

    return re.sub(r"(127\.0\.0\.1|localhost):\d+", r"\1:…", text)


@dataclass
class LocalS3:
    """A running local S3 server: where it listens and how to reach it."""

    endpoint_url: str
    process: subprocess.Popen = field(repr=False)
    key: str = LOCAL_KEY
    secret: str = LOCAL_SECRET

    def __repr__(self) -> str:
        return f"LocalS3(endpoint_url={hide_port(self.endpoint_url)!r})"

    @property
    def storage_options(self) -> dict:
        """What s3fs (and intake, xarray, zarr) need: endpoint and credentials."""
        return {
            "key": self.key,
            "secret": self.secret,
            "client_kwargs": {"endpoint_url": self.endpoint_url},
        }

    @property
    def environ(self) -> dict[str, str]:
        """The standard variables that point s3fs and botocore at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.key,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_DEFAULT_REGION": LOCAL_REGION,
            **CHECKSUM_SETTINGS,
        }

    def filesystem(self, **options: object):
        """A fresh s3fs file system for this server (not one from s3fs's instance cache)."""
        import s3fs

        return s3fs.S3FileSystem(skip_instance_cache=True, **self.storage_options, **options)

    def make_bucket(self, name: str) -> None:
        """Create the bucket ``name`` unless it exists."""
        fs = self.filesystem()
        if not fs.exists(name):
            fs.mkdir(name)

    def require_credentials(self) -> tuple[str, str]:
        """From now on accept only one key pair, as a real service does; return it.

        The server creates a user allowed to do anything on S3, with a new access key,
        and switches on its access checks.  Requests signed with other keys are refused
        (``InvalidAccessKeyId``).
        """
        import botocore.session

        client = botocore.session.get_session().create_client(
            "iam",
            endpoint_url=self.endpoint_url,
            region_name=LOCAL_REGION,
            aws_access_key_id=self.key,
            aws_secret_access_key=self.secret,
        )
        client.create_user(UserName="writer")
        client.put_user_policy(
            UserName="writer",
            PolicyName="s3",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
                }
            ),
        )
        created = client.create_access_key(UserName="writer")["AccessKey"]
        request = urllib.request.Request(
            f"{self.endpoint_url}/moto-api/reset-auth",
            data=b"0",
            method="POST",
            headers={"Content-Type": "text/plain"},  # a form body would be parsed away
        )
        urllib.request.urlopen(request, timeout=10).close()
        if os.environ.get("AWS_ACCESS_KEY_ID") == self.key:  # set by environ=True
            os.environ["AWS_ACCESS_KEY_ID"] = created["AccessKeyId"]
            os.environ["AWS_SECRET_ACCESS_KEY"] = created["SecretAccessKey"]
        self.key, self.secret = created["AccessKeyId"], created["SecretAccessKey"]
        return self.key, self.secret


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(port: int) -> subprocess.Popen:
    env = {**os.environ, **CHECKSUM_SETTINGS}
    return subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )


def _wait(process: subprocess.Popen, url: str) -> bool:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=2).close()
            return True
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)
    return False


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def local_s3(buckets: Sequence[str] = (), environ: bool = False) -> Iterator[LocalS3]:
    """Run an S3 server on 127.0.0.1 for the ``with`` body; create ``buckets`` in it.

    ``environ=True`` sets ``AWS_ENDPOINT_URL``, the credentials and the region for the
    body (and restores them after), so that code which reads them finds this server.
    """
    process = None
    for _ in range(5):  # another program may take the free port before the server does
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        process = _start(port)
        if _wait(process, url):
            break
        _stop(process)
        process = None
    if process is None:
        raise ServerError("the local S3 server did not start (is moto[server] installed?)")
    server = LocalS3(url, process)
    saved = {name: os.environ.get(name) for name in server.environ}
    try:
        if environ:
            os.environ.update(server.environ)
        for bucket in buckets:
            server.make_bucket(bucket)
        yield server
    finally:
        if environ:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        _stop(process)


__all__ = [
    "CHECKSUM_SETTINGS",
    "LocalS3",
    "ServerError",
    "hide_port",
    "local_s3",
    "s3_storage_options",
]
