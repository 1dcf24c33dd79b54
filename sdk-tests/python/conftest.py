"""Fixtures for the official-Python-SDK suite: one Strongbox dev server for the whole run.

The server is the already-built binary (env STRONGBOX_BIN); it runs on a free port with a
temporary data dir. Administration (vaults, service principals, access policies, audit) goes
through the binary's offline subcommands on the same data dir, as an operator would.

Vault hosts are `{vault}.vault.localhost`, which do not resolve on this machine, so
`socket.getaddrinfo` is patched to send them to 127.0.0.1: the stand-in for an /etc/hosts
entry. The SDK itself is used unmodified.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from azure.identity import ClientSecretCredential
from azure.keyvault.secrets import SecretClient

STRONGBOX_BIN = os.environ.get("STRONGBOX_BIN", "/work/main/target/debug/strongbox")
VAULT_HOST_SUFFIX = ".vault.localhost"
START_TIMEOUT_S = 60

# --- name resolution: *.vault.localhost -> 127.0.0.1 ------------------------------------------

_real_getaddrinfo = socket.getaddrinfo


def _getaddrinfo(host, *args, **kwargs):
    """Resolve every vault host to loopback, like an /etc/hosts entry would."""
    name = host.decode() if isinstance(host, bytes) else host
    if isinstance(name, str) and name.lower().rstrip(".").endswith(VAULT_HOST_SUFFIX):
        host = "127.0.0.1"
    return _real_getaddrinfo(host, *args, **kwargs)


@pytest.fixture(scope="session", autouse=True)
def vault_host_resolution():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket, "getaddrinfo", _getaddrinfo)
        yield


# --- helpers ----------------------------------------------------------------------------------


def unique(prefix: str = "s") -> str:
    """A fresh secret (or vault) name, so tests never share state through names."""
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


@dataclass(frozen=True)
class Principal:
    tenant_id: str
    client_id: str
    client_secret: str
    object_id: str | None = None


class Strongbox:
    """A running server plus the operator's offline CLI on its data dir."""

    def __init__(self, data_dir: Path, port: int, creds: dict):
        self.data_dir = data_dir
        self.port = port
        self.creds = creds
        self.authority = creds["authority"]
        self.admin = Principal(creds["tenant_id"], creds["client_id"], creds["client_secret"])
        self._clients: list[SecretClient] = []

    # CLI -------------------------------------------------------------------------------------

    def cli(self, *args: str, check: bool = True, data_dir: Path | None = None) -> subprocess.CompletedProcess:
        """Runs `strongbox <args> --data-dir DIR` (the server's data dir unless told otherwise)."""
        proc = subprocess.run(
            [STRONGBOX_BIN, *args, "--data-dir", str(data_dir or self.data_dir)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"strongbox {' '.join(args)} exited {proc.returncode}\n"
                f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
            )
        return proc

    def create_vault(self, *, purge_protection: bool = False, retention_days: int | None = None) -> str:
        name = "v" + uuid.uuid4().hex[:12]
        args = ["vault", "create", "--name", name]
        if purge_protection:
            args.append("--purge-protection")
        if retention_days is not None:
            args += ["--retention-days", str(retention_days)]
        out = json.loads(self.cli(*args).stdout)
        assert out["name"] == name
        return name

    def create_principal(self) -> Principal:
        out = json.loads(self.cli("sp", "create", "--name", unique("sp")).stdout)
        return Principal(out["tenant_id"], out["client_id"], out["client_secret"], out["object_id"])

    def set_policy(self, vault: str, object_id: str, permissions: str) -> None:
        self.cli(
            "policy", "set", "--vault", vault, "--object-id", object_id,
            "--secret-permissions", permissions,
        )

    # SDK -------------------------------------------------------------------------------------

    def vault_url(self, vault: str) -> str:
        return f"https://{vault}.vault.localhost:{self.port}"

    def credential(self, who: Principal, client_secret: str | None = None) -> ClientSecretCredential:
        return ClientSecretCredential(
            who.tenant_id,
            who.client_id,
            client_secret if client_secret is not None else who.client_secret,
            authority=self.authority,
            disable_instance_discovery=True,
        )

    def client(self, vault: str = "dev", who: Principal | None = None, **kwargs) -> SecretClient:
        c = SecretClient(self.vault_url(vault), self.credential(who or self.admin), **kwargs)
        self._clients.append(c)
        return c

    def owned_vault(self, **vault_options) -> tuple[str, SecretClient]:
        """A fresh vault and a client for a new principal holding all secret permissions on it."""
        vault = self.create_vault(**vault_options)
        owner = self.create_principal()
        self.set_policy(vault, owner.object_id, "all")
        return vault, self.client(vault, owner)

    def close(self) -> None:
        for c in self._clients:
            c.close()


# --- the server -------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(port: int, ca_cert: str) -> bool:
    ctx = ssl.create_default_context(cafile=ca_cert)
    try:
        with urllib.request.urlopen(f"https://localhost:{port}/healthz", context=ctx, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _start(data_dir: Path, log_path: Path, extra: tuple[str, ...] = ()) -> tuple[subprocess.Popen, int, dict]:
    port = _free_port()
    log = open(log_path, "ab")
    proc = subprocess.Popen(
        [STRONGBOX_BIN, "server", "--dev", "--data-dir", str(data_dir),
         "--listen", f"127.0.0.1:{port}", *extra],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    creds_file = data_dir / "dev-credentials.json"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"strongbox exited with {proc.returncode}; log: {log_path}")
        if creds_file.exists():
            try:
                creds = json.loads(creds_file.read_text())
            except json.JSONDecodeError:
                creds = None  # still being written
            if creds and _healthy(port, creds["ca_cert"]):
                return proc, port, creds
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"strongbox did not become healthy in {START_TIMEOUT_S}s; log: {log_path}")


@pytest.fixture(scope="session")
def sb(tmp_path_factory, vault_host_resolution):
    """One dev server for the session (a lost port race is retried)."""
    for attempt in range(3):
        data_dir = tmp_path_factory.mktemp("strongbox")
        log_path = data_dir.parent / f"{data_dir.name}-server.log"
        try:
            proc, port, creds = _start(data_dir, log_path)
            break
        except RuntimeError:
            if attempt == 2:
                raise
    assert creds["vault_url"] == f"https://dev.vault.localhost:{port}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REQUESTS_CA_BUNDLE", creds["ca_cert"])
        mp.setenv("SSL_CERT_FILE", creds["ca_cert"])
        server = Strongbox(data_dir, port, creds)
        try:
            yield server
        finally:
            server.close()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="session")
def dev(sb) -> SecretClient:
    """The dev admin's client on vault `dev` (all secret permissions)."""
    return sb.client("dev")


@pytest.fixture
def name() -> str:
    """A secret name no other test uses."""
    return unique()
