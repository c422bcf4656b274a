#!/usr/bin/env python3
"""The container tests, on a real Docker engine (run by scripts/docker-check):

- image: builds, runs as non-root with a read-only root file system, size under budget;
- reference: the reference system's docker-compose.yml with only the image changed, against
  an mTLS upstream container addressed by its service name (and by an extra_hosts name);
  the mounted client.jks is presented, rotated in place, and the health check follows the API;
- improved: keystores as they are in ./certs, ca.crt trust, passwords from secrets, rotation
  by rename, and `docker stop` during a slow job (answered, exit 0);
- active: 3 downloader containers on a broker, 2,000 jobs, one killed and one cut off from the
  broker for 10 s: every job answered.

Every container network is guarded (support.Guard): nothing leaves the test subnets.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from support import (FIXTURES, HOST_BINARY, IMAGE, ROOT, STORE_PASSWORD, UPSTREAM_IMAGE,
                     Broker, Failed, Guard, check, container_state, post_jobs, presented,
                     sh, upstream_dir, wait_health)

PUBLIC_IMAGE = "downloader-test-public-root:latest"
SIZE_BUDGET = 20 * 1000 * 1000
APIKEY, SECRET = "c0ffee00-downloader-apikey", "change-this-secret"
REPORT = {}


def compose(work, project, *args, files=("docker-compose.yml",), timeout=300):
    command = ["docker-compose", "-p", project]
    for name in files:
        command += ["-f", name]
    return sh(*command, *args, cwd=work, timeout=timeout)


def readable(*paths):
    """The container's user (65532) reads what the host mounts."""
    for path in paths:
        for item in [Path(path), *Path(path).rglob("*")]:
            item.chmod(0o755 if item.is_dir() else 0o644)


def upstream_running(name):
    """The upstream must be up before any job names it: a name Docker's DNS does not know is
    forwarded outside (and dropped by the guard), which would only show as a DNS timeout."""
    time.sleep(0.5)
    state = container_state(name)
    logs = sh("docker", "logs", name, check_rc=False, quiet=True).stderr[-1500:]
    check(state.get("Running"), f"{name} is not running: {logs}")


def test_image(tmp):
    size = int(sh("docker", "image", "inspect", "-f", "{{.Size}}", IMAGE).stdout)
    REPORT["image_bytes"] = size
    check(size < SIZE_BUDGET, f"image is {size} bytes, over the {SIZE_BUDGET} budget")
    user = sh("docker", "image", "inspect", "-f", "{{.Config.User}}", IMAGE).stdout.strip()
    check(user and not user.startswith("0") and user != "root", f"image user is {user!r}")
    version = sh("docker", "run", "--rm", "--read-only", IMAGE, "--version").stdout
    check(version.startswith("downloader "), f"--version printed {version!r}")
    uid = sh("docker", "run", "--rm", "--read-only", "--entrypoint",
             "/usr/local/bin/downloader", IMAGE, "healthcheck", "--url",
             "https://127.0.0.1:1", "--timeout", "1", check_rc=False, quiet=True)
    check(uid.returncode == 1 and "unhealthy" in uid.stderr,
          f"healthcheck against nothing: rc {uid.returncode}, {uid.stderr!r}")
    # The image stands for one with a public CA's root in its bundle (the reference's step 1
    # "may be not necessary"): the fixture root plays that CA.
    context = tmp / "public-root"
    context.mkdir()
    system = (ROOT / "target/image/rootfs/etc/ssl/certs/ca-certificates.crt").read_text()
    (context / "ca-certificates.crt").write_text(system + (FIXTURES / "ca/root.pem").read_text())
    (context / "Dockerfile").write_text(
        f"FROM {IMAGE}\nCOPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt\n")
    sh("docker", "build", "-q", "-t", PUBLIC_IMAGE, context,
       env={**os.environ, "DOCKER_BUILDKIT": "0"})


REFERENCE_UPSTREAM = """version: '3'
services:
  upstream:
    image: {image}
    networks:
      apifortress:
        ipv4_address: 172.18.1.2
    volumes:
      - ./upstream:/etc/upstream:ro
  downloader:
    extra_hosts:
      - "upstream.test:172.18.1.2"
"""


def test_reference(tmp):
    work = tmp / "reference"
    work.mkdir()
    text = (ROOT / "deploy/compose/reference/docker-compose.yml").read_text()
    # The image is the one change; the password is the user's own JKS's.
    text = text.replace("image: downloader:latest", f"image: {PUBLIC_IMAGE}")
    text = text.replace('"keystorePassword":"foobar"', f'"keystorePassword":"{STORE_PASSWORD}"')
    (work / "docker-compose.yml").write_text(text)
    shutil.copyfile(FIXTURES / "client/rsa2048/documented.jks", work / "client.jks")
    upstream_dir(work)
    (work / "upstream.yml").write_text(REFERENCE_UPSTREAM.format(image=UPSTREAM_IMAGE))
    readable(work)
    files = ("docker-compose.yml", "upstream.yml")
    sh("docker", "network", "create", "--subnet", "172.18.0.0/16", "apifortress")
    try:
        started = time.monotonic()
        compose(work, "dlref", "up", "-d", files=files)
        container = "dlref_downloader_1"
        upstream_running("dlref_upstream_1")
        wait_health(container, "healthy", 60)
        REPORT["start_to_healthy_seconds"] = round(time.monotonic() - started, 1)
        logs = sh("docker", "logs", container).stdout
        check("notice: java_opts" in logs, f"no java_opts notice in {logs[-1500:]}")
        no_secrets(container)
        base = "https://127.0.0.1:8819"
        results = post_jobs(base, APIKEY, SECRET, [
            {"id": "by-service-name", "method": "GET", "url": "https://upstream:8443/whoami"},
            {"id": "by-extra-hosts", "method": "GET", "url": "https://upstream.test:8443/whoami"},
        ])
        for result in results:
            subject = presented(result)
            check("CN=client-rsa2048" in subject, f"{result['id']}: presented {subject}")
        # Rotation: the host overwrites the mounted file (a single-file bind mount sees
        # writes in place, not a rename).
        shutil.copyfile(FIXTURES / "client/p256/documented.jks", work / "client.jks")
        subject = ""
        for _ in range(20):
            subject = presented(post_jobs(base, APIKEY, SECRET, {
                "method": "GET", "url": "https://upstream:8443/whoami"}))
            if "client-p256" in subject:
                break
            time.sleep(0.25)
        check("CN=client-p256" in subject, f"after rotation presented {subject}")
        # The health check follows the API: stopped process → unhealthy; resumed → healthy.
        sh("docker", "kill", "-s", "STOP", container)
        REPORT["healthy_to_unhealthy_seconds"] = round(wait_health(container, "unhealthy", 90), 1)
        sh("docker", "kill", "-s", "CONT", container)
        wait_health(container, "healthy", 60)
    finally:
        compose(work, "dlref", "down", "-v", "-t", "5", files=files)
        sh("docker", "network", "rm", "apifortress", check_rc=False)


IMPROVED_UPSTREAM = """version: '3.8'
services:
  upstream:
    image: {image}
    volumes:
      - ./upstream:/etc/upstream:ro
networks:
  default:
    ipam:
      config:
        - subnet: 172.28.0.0/24
"""


def test_improved(tmp):
    work = tmp / "improved"
    (work / "certs").mkdir(parents=True)
    (work / "secrets").mkdir()
    shutil.copyfile(ROOT / "deploy/compose/improved/docker-compose.yml",
                    work / "docker-compose.yml")
    certs = work / "certs"
    # Laid out as Kubernetes mounts a Secret: files in a timestamped directory, `..data`
    # pointing at it, and each name a symlink through `..data`.
    files_in = {"ca.crt": "ca/root.pem", "client.p12": "client/rsa2048/openssl.p12",
                "p384.pem": "client/p384/bundle.pem", "ed25519.jks": "client/ed25519/documented.jks"}
    secret_volume(certs, "..2026_12_01_a", files_in)
    for name in files_in:
        (certs / name).symlink_to(f"..data/{name}")
    (work / "secrets/downloader_secret").write_text(SECRET + "\n")
    (work / "secrets/client_password").write_text(STORE_PASSWORD + "\n")
    upstream_dir(work)
    (work / "upstream.yml").write_text(IMPROVED_UPSTREAM.format(image=UPSTREAM_IMAGE))
    readable(work)
    files = ("docker-compose.yml", "upstream.yml")
    container = "dlimp_downloader_1"
    try:
        compose(work, "dlimp", "up", "-d", files=files)
        upstream_running("dlimp_upstream_1")
        wait_health(container, "healthy", 60)
        base = "https://127.0.0.1:8819"
        named = lambda path, password: {"client_cert_configuration": {  # noqa: E731
            "keystorePath": path, "keystorePassword": password}}
        results = post_jobs(base, APIKEY, SECRET, [
            {"id": "default", "method": "GET", "url": "https://upstream:8443/whoami"},
            {"id": "pem", "method": "GET", "url": "https://upstream:8443/whoami",
             "config": named("/certs/p384.pem", None)},
            {"id": "jks", "method": "GET", "url": "https://upstream:8443/whoami",
             "config": named("/certs/ed25519.jks", STORE_PASSWORD)},
        ])
        wanted = {"default": "client-rsa2048", "pem": "client-p384", "jks": "client-ed25519"}
        for result in results:
            subject = presented(result)
            check(f"CN={wanted[result['id']]}" in subject, f"{result['id']}: {subject}")
        # Rotation as a Secret update does it: a new directory, then `..data` swapped by one
        # rename (what `mv` over a file does too).
        secret_volume(certs, "..2026_12_01_b", {**files_in, "client.p12": "client/p256/openssl.p12"})
        subject = presented(post_jobs(base, APIKEY, SECRET, {
            "method": "GET", "url": "https://upstream:8443/whoami"}))
        check("CN=client-p256" in subject, f"after the ..data swap presented {subject}")
        no_secrets(container)
        drain(base, container)
    finally:
        compose(work, "dlimp", "down", "-v", "-t", "5", files=files)


def no_secrets(container):
    """The container's output holds neither the API secret nor a keystore password."""
    logs = sh("docker", "logs", container)
    text = logs.stdout + logs.stderr
    for secret in (SECRET, STORE_PASSWORD):
        check(secret not in text, f"{container}'s log shows a secret")


def secret_volume(certs, version, files):
    """Writes `files` (name → fixture) into certs/VERSION and points certs/..data at it with
    one rename, as the kubelet updates a Secret or ConfigMap volume."""
    directory = certs / version
    directory.mkdir(parents=True)
    for name, fixture in files.items():
        shutil.copyfile(FIXTURES / fixture, directory / name)
    readable(certs)
    staged = certs / "..data_tmp"
    staged.symlink_to(version)
    os.replace(staged, certs / "..data")


def drain(base, container):
    """`docker stop` while a 4-second job runs: the job is answered, the exit code is 0."""
    answer = {}

    def slow():
        try:
            answer["result"] = post_jobs(base, APIKEY, SECRET, {
                "method": "GET", "url": "https://upstream:8443/slow4", "config": {"timeout": 30}})
        except Exception as error:  # reported below
            answer["error"] = error

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(1.0)
    started = time.monotonic()
    sh("docker", "stop", "-t", "40", container)
    REPORT["stop_during_slow_job_seconds"] = round(time.monotonic() - started, 1)
    thread.join(30)
    check("error" not in answer, f"slow job during stop: {answer.get('error')}")
    result = answer.get("result") or {}
    check(result.get("ok") is True and result["response"]["statusCode"] == 200,
          f"slow job during stop: {json.dumps(result)[:800]}")
    check(len(result["response"]["body"]) == 4096, "slow job body cut short")
    state = container_state(container)
    check(state["ExitCode"] == 0, f"exit code after docker stop: {state['ExitCode']}")


ACTIVE_OVERRIDE = """version: '3.8'
services:
  downloader:
    environment:
      # The broker runs on the test host (no registry here for a rabbitmq image).
      rabbitHost: '172.29.0.1'
      rabbitPort: '{port}'
      rabbitUsername: guest
    # Two networks: the broker's, which the fault run cuts, and the upstream's, which it keeps.
    networks:
      - default
      - jobs
networks:
  default:
    external: true
    name: dl-active
  jobs:
    external: true
    name: dl-jobs
"""


def test_active(tmp):
    work = tmp / "active"
    (work / "certs").mkdir(parents=True)
    (work / "secrets").mkdir()
    shutil.copyfile(ROOT / "deploy/compose/active/docker-compose.yml",
                    work / "docker-compose.yml")
    shutil.copyfile(FIXTURES / "ca/root.pem", work / "certs/ca.crt")
    shutil.copyfile(FIXTURES / "client/rsa2048/openssl.p12", work / "certs/client.p12")
    (work / "secrets/rabbit_password").write_text("guest\n")
    port = 25672 + os.getpid() % 1000
    (work / "override.yml").write_text(ACTIVE_OVERRIDE.format(port=port))
    upstream = upstream_dir(work)
    readable(work)
    files = ("docker-compose.yml", "override.yml")
    sh("docker", "network", "create", "--subnet", "172.29.0.0/24", "dl-active")
    sh("docker", "network", "create", "--subnet", "172.30.0.0/24", "dl-jobs")
    broker = Broker("172.29.0.1", port)
    try:
        broker.start()
        sh("docker", "run", "-d", "--name", "dl-active-upstream", "--network", "dl-jobs",
           "--network-alias", "upstream", "-v", f"{upstream}:/etc/upstream:ro", UPSTREAM_IMAGE)
        upstream_running("dl-active-upstream")
        compose(work, "dlact", "up", "-d", "--no-deps", "downloader", files=files)
        names = [f"dlact_downloader_{n}" for n in (1, 2, 3)]
        for name in names:
            wait_health(name, "healthy", 60)
        deadline = time.monotonic() + 60
        while broker.consumers("downloader.jobs") < 3:
            check(time.monotonic() < deadline, "3 consumers did not attach to downloader.jobs")
            time.sleep(1)
        fault_run(work, broker, names)
    finally:
        compose(work, "dlact", "down", "-v", "-t", "5", files=files)
        sh("docker", "rm", "-f", "dl-active-upstream", check_rc=False)
        broker.stop()
        sh("docker", "network", "rm", "dl-active", check_rc=False)
        sh("docker", "network", "rm", "dl-jobs", check_rc=False)


def busy(name):
    """How many jobs the container has logged."""
    logs = sh("docker", "logs", name, quiet=True)
    return (logs.stdout + logs.stderr).count(" job id=")


def fault_run(work, broker, names):
    jobs = work / "jobs.ndjson"
    config = {"client_cert_configuration": {"keystorePath": "/certs/client.p12",
                                            "keystorePassword": STORE_PASSWORD},
              "timeout": 60}
    with jobs.open("w") as out:
        for n in range(2000):
            out.write(json.dumps({"id": f"job-{n}", "method": "GET",
                                  "url": f"https://upstream:8443/slow1?n={n}",
                                  "config": config}) + "\n")
    submit = subprocess.Popen(
        [str(HOST_BINARY), "submit", "--amqp", f"amqp://guest:guest@{broker.address}:"
         f"{broker.port}/%2f", "--timeout", "300", str(jobs)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started = time.monotonic()
    # Kill the first downloader once it is busy (it has answered some jobs and holds more).
    deadline = time.monotonic() + 60
    while busy(names[0]) < 50:
        check(time.monotonic() < deadline, f"{names[0]} ran no job within 60 s")
        time.sleep(0.2)
    sh("docker", "kill", names[0])
    address = sh("docker", "inspect", "-f",
                 '{{(index .NetworkSettings.Networks "dl-active").IPAddress}}',
                 names[1]).stdout.strip()
    sh("docker", "network", "disconnect", "dl-active", names[1])
    time.sleep(10)
    sh("docker", "network", "connect", "--ip", address, "dl-active", names[1])
    out, err = submit.communicate(timeout=330)
    REPORT["active_run_seconds"] = round(time.monotonic() - started, 1)
    results = [json.loads(line) for line in out.splitlines() if line.strip()]
    ids = [result.get("id") for result in results]
    unique = set(ids)
    missing = {f"job-{n}" for n in range(2000)} - unique
    failed = [r for r in results if not (r.get("ok") and r["response"]["statusCode"] == 200)]

    redelivered = sum(1 for r in results if r.get("redelivered"))
    REPORT["active"] = {"jobs": 2000, "results": len(results), "unique": len(unique),
                        "redelivered_marked": redelivered,
                        "failed": len(failed),
                        "duplicates": len(results) - len(unique),
                        "submit_stderr": err.strip().splitlines()[-3:]}
    if os.environ.get("DOCKER_CHECK_DEBUG"):
        for name in names:
            logs = sh("docker", "logs", name, check_rc=False, quiet=True)
            print(name, (logs.stdout + logs.stderr)[-2500:])
    check(not missing, f"{len(missing)} jobs never answered, e.g. {sorted(missing)[:5]}")
    check(not failed, f"{len(failed)} jobs failed, e.g. {json.dumps(failed[:2])[:1500]}")
    check(redelivered > 0, "the killed downloader's jobs were not marked redelivered")
    check(submit.returncode == 0, f"submit exited {submit.returncode}: {err[-1500:]}")


def main():
    tests = [test_image, test_reference, test_improved, test_active]
    wanted = sys.argv[1:]
    failures = 0
    with tempfile.TemporaryDirectory(prefix="dl-docker-") as tmp, \
            Guard(["172.18.0.0/16", "172.28.0.0/24", "172.29.0.0/24", "172.30.0.0/24"]):
        for test in tests:
            if wanted and test.__name__.removeprefix("test_") not in wanted:
                continue
            started = time.monotonic()
            try:
                test(Path(tmp))
                print(f"ok    {test.__name__} ({time.monotonic() - started:.1f}s)")
            except (Failed, subprocess.SubprocessError, OSError) as error:
                failures += 1
                print(f"FAIL  {test.__name__} ({time.monotonic() - started:.1f}s): {error}")
    print(json.dumps(REPORT, indent=2))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
