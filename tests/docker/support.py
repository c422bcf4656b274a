"""Shared pieces of the container tests: commands, certificates, the upstream, the job API,
the egress guard and a RabbitMQ broker on the host. Standard library only."""

import base64
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
STORE_PASSWORD = "Fx-store-7431"  # tests/fixtures/README.md
IMAGE = os.environ.get("DOWNLOADER_IMAGE", "downloader:latest")
UPSTREAM_IMAGE = "downloader-test-nginx:latest"
TARGET = subprocess.run(
    ["rustc", "-vV"], capture_output=True, text=True, check=True
).stdout.split("host: ")[1].split()[0]
HOST_BINARY = ROOT / "target" / TARGET / "dist" / "downloader"


class Failed(AssertionError):
    """A check that did not hold."""


def check(condition, message):
    if not condition:
        raise Failed(message)


def sh(*args, check_rc=True, timeout=300, cwd=None, env=None, quiet=False):
    """Runs a command; returns its CompletedProcess (text). Fails loudly on a bad exit."""
    result = subprocess.run(
        [str(arg) for arg in args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
    )
    if check_rc and result.returncode != 0:
        raise Failed(
            f"{' '.join(map(str, args))} exited {result.returncode}\n"
            f"stdout: {result.stdout[-3000:]}\nstderr: {result.stderr[-3000:]}"
        )
    if not quiet and result.returncode != 0:
        print(f"  ({args[0]} exited {result.returncode}: {result.stderr.strip()[-300:]})")
    return result


class Guard:
    """Keeps test containers from sending a packet anywhere but their own networks: a
    DOCKER-USER rule drops everything forwarded from a test subnet to another address (the
    embedded DNS server's forwarded queries included)."""

    def __init__(self, subnets):
        self.subnets = subnets
        self.rules = []

    def __enter__(self):
        for subnet in self.subnets:
            rule = ["-s", subnet, "!", "-d", subnet, "-j", "DROP"]
            sh("iptables", "-I", "DOCKER-USER", *rule)
            self.rules.append(rule)
        return self

    def __exit__(self, *exc):
        for rule in self.rules:
            sh("iptables", "-D", "DOCKER-USER", *rule, check_rc=False)


def issue_server_cert(directory, names):
    """A server certificate for `names`, issued by the fixture intermediate; writes
    server.key and server-chain.pem (leaf + intermediate) into `directory`."""
    directory = Path(directory)
    key, csr = directory / "server.key", directory / "server.csr"
    sh("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
       "-nodes", "-keyout", key, "-out", csr, "-subj", f"/CN={names[0]}")
    ext = directory / "server.ext"
    sans = ",".join(f"DNS:{name}" for name in names)
    ext.write_text(f"subjectAltName={sans}\nextendedKeyUsage=serverAuth\n")
    leaf = directory / "server.pem"
    sh("openssl", "x509", "-req", "-in", csr, "-CA", FIXTURES / "ca/intermediate.pem",
       "-CAkey", FIXTURES / "ca/intermediate.key.pem", "-set_serial",
       str(int.from_bytes(os.urandom(8), "big")), "-days", "3",
       "-sha256", "-extfile", ext, "-out", leaf)
    chain = leaf.read_text() + (FIXTURES / "ca/intermediate.pem").read_text()
    (directory / "server-chain.pem").write_text(chain)
    for path in directory.iterdir():
        path.chmod(0o644)


NGINX_CONF = """
user nobody nogroup;
worker_processes 2;
daemon off;
pid /tmp/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path /tmp/body;
  proxy_temp_path /tmp/proxy;
  fastcgi_temp_path /tmp/fastcgi;
  uwsgi_temp_path /tmp/uwsgi;
  scgi_temp_path /tmp/scgi;
  keepalive_requests 100000;
  server {
    listen 8443 ssl;
    ssl_certificate /etc/upstream/server-chain.pem;
    ssl_certificate_key /etc/upstream/server.key;
    ssl_client_certificate /etc/upstream/client-ca.pem;
    ssl_verify_client on;
    ssl_verify_depth 3;
    root /etc/upstream/www;
    location = /whoami {
      default_type text/plain;
      return 200 "subject=$ssl_client_s_dn\\nissuer=$ssl_client_i_dn\\nverify=$ssl_client_verify\\n";
    }
    # Slow answers: the files are sent at 1 KiB/s.
    location /slow { limit_rate 1k; limit_rate_after 0; default_type text/plain; }
  }
}
"""


def upstream_dir(parent):
    """The upstream's configuration: nginx.conf, a certificate for the names `upstream` and
    `upstream.test`, the client CA (fixture chain) and the slow files."""
    directory = Path(parent) / "upstream"
    (directory / "www").mkdir(parents=True)
    issue_server_cert(directory, ["upstream", "upstream.test"])
    shutil.copy(FIXTURES / "ca/chain.pem", directory / "client-ca.pem")
    (directory / "nginx.conf").write_text(NGINX_CONF)
    (directory / "www/slow4").write_text("s" * 4096)
    (directory / "www/slow1").write_text("s" * 1200)
    for path in [directory, directory / "www", *directory.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return directory


def post_jobs(base, apikey, secret, jobs, timeout=60):
    """POSTs jobs to the job API (loopback; the agent's generated certificate is not
    verified here); returns the parsed results."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    token = base64.b64encode(f"{apikey}:{secret}".encode()).decode()
    request = urllib.request.Request(
        f"{base}/api/v1/jobs",
        data=json.dumps(jobs).encode(),
        headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, context=context, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        raise Failed(f"job API answered {error.code}: {error.read()[:500]!r}") from error


def presented(result):
    """The client certificate subject the upstream saw, from a /whoami result."""
    check(result.get("ok") is True, f"job failed: {json.dumps(result)[:1500]}")
    response = result["response"]
    check(response["statusCode"] == 200, f"upstream answered {response['statusCode']}")
    body = response["body"]
    for line in body.splitlines():
        if line.startswith("subject="):
            return line[len("subject="):]
    raise Failed(f"no subject in {body!r}")


def container_state(name):
    text = sh("docker", "inspect", "-f", "{{json .State}}", name).stdout
    return json.loads(text)


def wait_health(name, wanted, timeout):
    """Seconds until the container's health status is `wanted`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        state = container_state(name)
        status = (state.get("Health") or {}).get("Status")
        if status == wanted:
            return time.monotonic() - start
        if not state.get("Running"):
            logs = sh("docker", "logs", name, check_rc=False).stderr[-2000:]
            raise Failed(f"{name} stopped while waiting for {wanted}: {logs}")
        time.sleep(0.25)
    raise Failed(f"{name} not {wanted} within {timeout}s: {container_state(name)}")


def wait_port(host, port, timeout=30):
    import socket

    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise Failed(f"{host}:{port} did not open within {timeout}s")


class Broker:
    """Debian's RabbitMQ on the host, listening on `address` only (the test network's
    gateway), in a temporary directory owned by the rabbitmq user."""

    SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
    CTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"

    def __init__(self, address, port):
        self.address, self.port = address, port
        self.dir = Path(tempfile.mkdtemp(prefix="dl-docker-rabbit-"))
        self.node = f"dldocker{os.getpid()}@localhost"
        self.process = None

    def env(self):
        env = dict(os.environ)
        env.update(
            HOME="/var/lib/rabbitmq",
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_NODE_IP_ADDRESS=self.address,
            RABBITMQ_DIST_PORT=str(self.port + 20000),
            RABBITMQ_MNESIA_BASE=str(self.dir / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.dir / "log"),
            RABBITMQ_CONFIG_FILE=str(self.dir / "rabbitmq"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.dir / "enabled_plugins"),
            RABBITMQ_PID_FILE=str(self.dir / "pid"),
        )
        return env

    def start(self):
        (self.dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = {self.address}:{self.port}\nloopback_users = none\n"
        )
        (self.dir / "enabled_plugins").write_text("[].\n")
        sh("chown", "-R", "rabbitmq:rabbitmq", self.dir)
        self.process = subprocess.Popen(
            ["runuser", "-u", "rabbitmq", "--", self.SERVER],
            env=self.env(),
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.address, self.port, timeout=90)
        return self

    def ctl(self, *args):
        return sh("runuser", "-u", "rabbitmq", "--", self.CTL, "-n", self.node, *args,
                  env=self.env(), timeout=60, check_rc=False, quiet=True)

    def consumers(self, queue):
        out = self.ctl("list_queues", "-q", "name", "consumers").stdout
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == queue:
                return int(parts[1])
        return 0

    def stop(self):
        if self.process is not None:
            self.ctl("stop")
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
