"""The edge agent's local managed-identity endpoint (Azure Arc form) with the official,
unmodified azure-identity: a workload on the device whose environment names only
IDENTITY_ENDPOINT and IMDS_ENDPOINT (plus PATH and the CA bundle that trusts the server's TLS)
reads a device secret from the device's vault with ManagedIdentityCredential + SecretClient.

The device is set up as an operator would, with the strongbox binary: `device create`,
`device activation-key`, `agent activate`, then `agent run`, whose printed IDENTITY_ENDPOINT /
IMDS_ENDPOINT are used as they are. Refusals are checked step by step as MSAL makes the calls.

azure-identity reads challenge files only from /var/opt/azcmagent/tokens; where that cannot be
created (not root) these tests are skipped, except under CI=true where that is a failure.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests

from conftest import STRONGBOX_BIN, Strongbox, unique

ARC_DIR = Path("/var/opt/azcmagent/tokens")

# The workload: reads one secret with ManagedIdentityCredential configured from the environment.
WORKLOAD = r'''
import json, socket, sys
_real = socket.getaddrinfo
def _gai(host, *a, **k):
    if isinstance(host, str) and host.lower().rstrip(".").endswith(".vault.localhost"):
        host = "127.0.0.1"
    return _real(host, *a, **k)
socket.getaddrinfo = _gai
from azure.identity import ManagedIdentityCredential
from azure.keyvault.secrets import SecretClient
vault_url, name = sys.argv[1], sys.argv[2]
try:
    secret = SecretClient(vault_url, ManagedIdentityCredential()).get_secret(name)
    print(json.dumps({"value": secret.value}))
except Exception as e:
    print(json.dumps({"error": type(e).__name__, "message": str(e)}))
    sys.exit(1)
'''


def _arc_dir_usable() -> bool:
    try:
        ARC_DIR.mkdir(parents=True, exist_ok=True)
        return os.access(ARC_DIR, os.W_OK | os.R_OK)
    except OSError:
        return False


def _run(*args: str) -> str:
    proc = subprocess.run([STRONGBOX_BIN, *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"strongbox {' '.join(args)}: {proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _claims(jwt: str) -> dict:
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


class Agent:
    """`strongbox agent run` on a data dir; its printed environment in `env`."""

    def __init__(self, data_dir: Path, ca: str, *extra: str):
        self.proc = subprocess.Popen(
            [STRONGBOX_BIN, "agent", "run", "--data-dir", str(data_dir), "--server-ca", ca,
             "--port", "0", "--poll-interval", "3600", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()
        self.env: dict[str, str] = {}
        while "IMDS_ENDPOINT" not in self.env:
            try:
                line = self.lines.get(timeout=30)
            except queue.Empty:
                self.stop()
                raise AssertionError(f"agent run printed no endpoint: {self.output}")
            m = re.fullmatch(r"(IDENTITY_ENDPOINT|IMDS_ENDPOINT)=(\S+)", line.strip())
            if m:
                self.env[m.group(1)] = m.group(2)

    def _drain(self) -> None:
        for line in self.proc.stdout:
            self.output.append(line)
            self.lines.put(line)

    @property
    def url(self) -> str:
        return self.env["IDENTITY_ENDPOINT"]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _device(sb: Strongbox, tmp: Path) -> tuple[str, str, Path]:
    """A device activated into a fresh agent data dir: (device name, its vault, data dir)."""
    creds = str(sb.data_dir / "dev-credentials.json")
    name = unique("edge")[:20]
    _run("device", "create", "-n", name, "--credentials", creds)
    key = _run("device", "activation-key", "-n", name, "--credentials", creds).strip()
    data_dir = tmp / name
    out = _run("agent", "activate", "--key", key, "--data-dir", str(data_dir),
               "--server-ca", sb.creds["ca_cert"])
    vault = re.search(r"vault (\S+?)\)", out).group(1)
    return name, vault, data_dir


@pytest.fixture(scope="module")
def arc_ok():
    if _arc_dir_usable():
        return True
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {ARC_DIR} cannot be created: the Arc form cannot be tested")
    pytest.skip(f"{ARC_DIR} cannot be created here (not root); the agent's Arc endpoint is untested")


@pytest.fixture(scope="module")
def edge(sb, arc_ok, tmp_path_factory):
    """One activated device with its agent running (default challenge dir)."""
    name, vault, data_dir = _device(sb, tmp_path_factory.mktemp("agent"))
    agent = Agent(data_dir, sb.creds["ca_cert"])
    try:
        yield name, vault, agent
    finally:
        agent.stop()


def _workload(sb: Strongbox, env: dict[str, str], vault: str, name: str):
    clean = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        # Trust for the server's TLS only; the identity comes from the two variables.
        "REQUESTS_CA_BUNDLE": sb.creds["ca_cert"],
        "SSL_CERT_FILE": sb.creds["ca_cert"],
        **env,
    }
    proc = subprocess.run(
        [sys.executable, "-c", WORKLOAD, sb.vault_url(vault), name],
        env=clean, capture_output=True, text=True, timeout=120,
    )
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    assert lines, f"workload printed nothing; stderr: {proc.stderr[-2000:]}"
    return proc.returncode, json.loads(lines[-1])


def test_unmodified_sdk_reads_a_device_secret_through_the_agent(sb, edge):
    name, vault, agent = edge
    assert set(agent.env) == {"IDENTITY_ENDPOINT", "IMDS_ENDPOINT"}
    assert agent.url.startswith("http://127.0.0.1:") and agent.url.endswith(
        "/metadata/identity/oauth2/token")
    before = set(ARC_DIR.glob("strongbox-*.key"))
    code, out = _workload(sb, agent.env, vault, f"{name}-bmc-password")
    assert code == 0, out
    assert len(out["value"]) == 24
    # It is the value the device pushed: the admin, once granted, reads the same.
    admin_token = sb.credential(sb.admin).get_token(f"{sb.authority}/.default").token
    sb.set_policy(vault, _claims(admin_token)["oid"], "get")
    assert sb.client(vault).get_secret(f"{name}-bmc-password").value == out["value"]
    assert set(ARC_DIR.glob("strongbox-*.key")) <= before, "used challenge files are removed"


def test_azure_vault_resource_name_through_the_agent(sb, edge):
    """A workload asking the agent for https://vault.azure.net gets a token the vault takes."""
    name, vault, agent = edge
    clean = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "REQUESTS_CA_BUNDLE": sb.creds["ca_cert"],
        "SSL_CERT_FILE": sb.creds["ca_cert"],
        **agent.env,
    }
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).parent / "workloads" / "read_as_azure_vault.py"),
         sb.vault_url(vault), f"{name}-bmc-password"],
        env=clean, capture_output=True, text=True, timeout=120,
    )
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out["status"] == 200 and len(out["value"]) == 24, (out, proc.stderr)


def test_the_protocol_step_by_step_and_its_refusals(sb, edge):
    _, _, agent = edge
    resource = f"https://vault.localhost:{sb.port}"
    params = {"api-version": "2020-06-01", "resource": resource}

    no_metadata = requests.get(agent.url, params=params)
    assert no_metadata.status_code == 400
    assert "metadata" in no_metadata.json()["error_description"].lower()

    first = requests.get(agent.url, params=params, headers={"Metadata": "true"})
    assert first.status_code == 401
    scheme, path = first.headers["WWW-Authenticate"].split("=")
    assert scheme == "Basic realm" and Path(path).parent == ARC_DIR and path.endswith(".key")
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert os.stat(path).st_size <= 4096
    secret = Path(path).read_text()

    wrong = requests.get(agent.url, params=params,
                         headers={"Metadata": "true", "Authorization": "Basic " + "A" * len(secret)})
    assert wrong.status_code == 401 and "access_token" not in wrong.text

    ok = requests.get(agent.url, params=params,
                      headers={"Metadata": "true", "Authorization": f"Basic {secret}"})
    assert ok.status_code == 200, ok.text
    body = ok.json()
    for k in ("access_token", "expires_in", "expires_on", "not_before", "resource", "token_type"):
        assert isinstance(body[k], str), (k, body)
    assert body["token_type"] == "Bearer" and body["resource"] == resource
    claims = _claims(body["access_token"])
    assert int(body["expires_on"]) == claims["exp"]
    assert not Path(path).exists()

    reused = requests.get(agent.url, params=params,
                          headers={"Metadata": "true", "Authorization": f"Basic {secret}"})
    assert reused.status_code == 401 and "access_token" not in reused.text

    # Only the device's own identity is served.
    other = requests.get(agent.url, params={**params, "client_id": "00000000-0000-0000-0000-000000000000"},
                         headers={"Metadata": "true"})
    assert other.status_code == 400


def test_challenges_outside_the_arc_dir_are_not_read_by_the_sdk(sb, arc_ok, tmp_path):
    """With --msi-challenge-dir elsewhere the SDK does not follow the realm (it reads only
    /var/opt/azcmagent/tokens), so no token is obtained; and an agent not yet activated has no
    identity to give."""
    name, vault, data_dir = _device(sb, tmp_path)
    elsewhere = tmp_path / "tokens"
    agent = Agent(data_dir, sb.creds["ca_cert"], "--msi-challenge-dir", str(elsewhere))
    try:
        code, out = _workload(sb, agent.env, vault, f"{name}-bmc-password")
        assert code == 1 and "value" not in out, out
        # MSAL looked for the realm's file name in the Arc directory, not where it is.
        assert out["error"] == "FileNotFoundError" and str(ARC_DIR) in out["message"], out
        first = requests.get(agent.url, params={"api-version": "2020-06-01", "resource": "https://vault.localhost"},
                             headers={"Metadata": "true"})
        assert first.status_code == 401
        assert Path(first.headers["WWW-Authenticate"].split("=")[1]).parent == elsewhere
    finally:
        agent.stop()

    fresh = Agent(tmp_path / "not-activated", sb.creds["ca_cert"], "--msi-challenge-dir", str(elsewhere))
    try:
        params = {"api-version": "2020-06-01", "resource": f"https://vault.localhost:{sb.port}"}
        first = requests.get(fresh.url, params=params, headers={"Metadata": "true"})
        path = first.headers["WWW-Authenticate"].split("=")[1]
        r = requests.get(fresh.url, params=params,
                         headers={"Metadata": "true", "Authorization": f"Basic {Path(path).read_text()}"})
        assert r.status_code == 400 and "not activated" in r.json()["error_description"], r.text
    finally:
        fresh.stop()
