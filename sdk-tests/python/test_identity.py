"""Identities with the official, unmodified Azure SDKs for Python: managed identities through
azure-identity's ManagedIdentityCredential (App Service and Azure Arc forms), certificate
credentials through CertificateCredential, user-assigned identities through azure-mgmt-msi and
role assignments through azure-mgmt-authorization.

Managed-identity workloads run in a subprocess whose environment holds only what
`strongbox identity env` prints (plus PATH), so azure-identity chooses its source from the
environment alone, as on a real host. The subprocess sends *.vault.localhost to 127.0.0.1 itself,
the stand-in for an /etc/hosts entry (see conftest.py).

These tests run their own server (`--arc-token-dir`, and a second one with `--dev-clock` for
certificate expiry). The Arc form needs /var/opt/azcmagent/tokens, the only directory
azure-identity reads challenge files from on Linux; where it cannot be created (not root) the
Arc tests are skipped, except under CI=true where that is a failure.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.identity import CertificateCredential, ClientSecretCredential
from azure.keyvault.secrets import SecretClient
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.msi import ManagedServiceIdentityClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from conftest import START_TIMEOUT_S, STRONGBOX_BIN, Strongbox, _free_port, _healthy, unique

ARC_DIR = Path("/var/opt/azcmagent/tokens")
RG = "strongbox-dev"
SECRETS_USER = "Key Vault Secrets User"
SECRETS_OFFICER = "Key Vault Secrets Officer"

# The workload: reads one secret with ManagedIdentityCredential configured from the environment.
WORKLOAD = r'''
import json, os, socket, sys
_real = socket.getaddrinfo
def _gai(host, *a, **k):
    if isinstance(host, str) and host.lower().rstrip(".").endswith(".vault.localhost"):
        host = "127.0.0.1"
    return _real(host, *a, **k)
socket.getaddrinfo = _gai
from azure.identity import ManagedIdentityCredential
from azure.keyvault.secrets import SecretClient
vault_url, name, selector = sys.argv[1], sys.argv[2], sys.argv[3]
kwargs = {"client_id": os.environ["AZURE_CLIENT_ID"]} if selector == "client_id" else {}
try:
    secret = SecretClient(vault_url, ManagedIdentityCredential(**kwargs)).get_secret(name)
    print(json.dumps({"value": secret.value}))
except Exception as e:
    print(json.dumps({"error": type(e).__name__, "message": str(e)}))
    sys.exit(1)
'''


def _start(data_dir: Path, extra: list[str]) -> tuple[subprocess.Popen, int, dict]:
    port = _free_port()
    log = open(data_dir.parent / f"{data_dir.name}-server.log", "ab")
    proc = subprocess.Popen(
        [STRONGBOX_BIN, "server", "--dev", "--data-dir", str(data_dir),
         "--listen", f"127.0.0.1:{port}", *extra],
        stdout=log, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"strongbox exited with {proc.returncode}")
        try:
            creds = json.loads((data_dir / "dev-credentials.json").read_text())
        except (OSError, json.JSONDecodeError):
            creds = None
        if creds and creds["authority"].endswith(f":{port}") and _healthy(port, creds["ca_cert"]):
            return proc, port, creds
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("strongbox did not become healthy")


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _arc_dir_usable() -> bool:
    try:
        ARC_DIR.mkdir(parents=True, exist_ok=True)
        return os.access(ARC_DIR, os.W_OK | os.R_OK)
    except OSError:
        return False


@dataclass
class World:
    sb: Strongbox
    arc: bool
    admin_cred: ClientSecretCredential
    msi: ManagedServiceIdentityClient
    auth: AuthorizationManagementClient

    @property
    def sub(self) -> str:
        return self.sb.creds["subscription_id"]

    def role_id(self, name: str) -> str:
        found = list(self.auth.role_definitions.list(
            f"/subscriptions/{self.sub}", filter=f"roleName eq '{name}'"))
        assert len(found) == 1, name
        return found[0].id

    def assign(self, scope: str, role: str, principal_id: str):
        return self.auth.role_assignments.create(scope, str(uuid.uuid4()), {
            "role_definition_id": self.role_id(role),
            "principal_id": principal_id,
            "principal_type": "ServicePrincipal",
        })

    def vault_scope(self, vault: str) -> str:
        return f"/subscriptions/{self.sub}/resourceGroups/{RG}/providers/Microsoft.KeyVault/vaults/{vault}"

    def rbac_vault_with_secret(self, name: str, value: str) -> tuple[str, str]:
        """A fresh RBAC vault holding one secret (written by the admin as Secrets Officer)."""
        vault = "r" + uuid.uuid4().hex[:12]
        self.sb.cli("vault", "create", "--name", vault, "--enable-rbac")
        self.assign(self.vault_scope(vault), SECRETS_OFFICER, self.admin_object_id())
        self.sb.client(vault).set_secret(name, value)
        return vault, self.vault_scope(vault)

    def admin_object_id(self) -> str:
        token = self.admin_cred.get_token(f"{self.sb.authority}/.default").token
        payload = token.split(".")[1]
        return json.loads(_b64url(payload))["oid"]

    def env(self, *which: str, form: str) -> dict[str, str]:
        out = self.sb.cli("identity", "env", *which, "--form", form, "--json").stdout
        return json.loads(out)

    def run_workload(self, env: dict[str, str], vault: str, name: str, selector: str = "none"):
        clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}
        proc = subprocess.run(
            [sys.executable, "-c", WORKLOAD, self.sb.vault_url(vault), name, selector],
            env=clean, capture_output=True, text=True, timeout=120,
        )
        lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
        assert lines, f"workload printed nothing; stderr: {proc.stderr[-2000:]}"
        return proc.returncode, json.loads(lines[-1])


def _b64url(s: str) -> bytes:
    import base64
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


@pytest.fixture(scope="module")
def world(tmp_path_factory, vault_host_resolution):
    arc = _arc_dir_usable()
    if not arc and os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {ARC_DIR} cannot be created: the Arc form cannot be tested")
    data_dir = tmp_path_factory.mktemp("strongbox-identity")
    extra = ["--arc-token-dir", str(ARC_DIR)] if arc else []
    proc, port, creds = _start(data_dir, extra)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REQUESTS_CA_BUNDLE", creds["ca_cert"])
        mp.setenv("SSL_CERT_FILE", creds["ca_cert"])
        sb = Strongbox(data_dir, port, creds)
        cred = sb.credential(sb.admin)
        w = World(
            sb=sb,
            arc=arc,
            admin_cred=cred,
            msi=ManagedServiceIdentityClient(cred, creds["subscription_id"], base_url=sb.authority),
            auth=AuthorizationManagementClient(cred, creds["subscription_id"], base_url=sb.authority),
        )
        try:
            yield w
        finally:
            sb.close()
            _stop(proc)


def _need_arc(world: World) -> None:
    if not world.arc:
        pytest.skip(f"{ARC_DIR} cannot be created here (not root); the Arc form is untested")


def _cert(common_name: str, *, days: int = 30) -> tuple[bytes, x509.Certificate]:
    """A self-signed RSA certificate and its key in one PEM, as CertificateCredential loads it."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ) + cert.public_bytes(serialization.Encoding.PEM)
    return pem, cert


# --- managed identities -------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["app-service", "arc"])
def test_system_assigned_identity_reads_a_secret_with_only_environment_variables(world, form, tmp_path):
    if form == "arc":
        _need_arc(world)
    owner = f"/subscriptions/{world.sub}/resourceGroups/{RG}/providers/Microsoft.Devices/edges/{unique('edge')}"
    identity = json.loads(world.sb.cli("identity", "create", "--owner", owner).stdout)
    assert identity["kind"] == "SystemAssigned"
    vault, scope = world.rbac_vault_with_secret("db-password", "hunter2")
    world.assign(scope, SECRETS_USER, identity["principalId"])

    env = world.env("--owner", owner, form=form)
    if form == "app-service":
        assert {"IDENTITY_ENDPOINT", "IDENTITY_HEADER"} <= set(env)
    else:
        # With IDENTITY_HEADER present azure-identity would pick App Service instead.
        assert {"IDENTITY_ENDPOINT", "IMDS_ENDPOINT"} <= set(env) and "IDENTITY_HEADER" not in env
    code, out = world.run_workload(env, vault, "db-password")
    assert (code, out) == (0, {"value": "hunter2"}), out
    if form == "arc":
        assert not list(ARC_DIR.glob("strongbox-*.key")), "used challenge files are removed"

    # Deleted with its resource: the same environment no longer yields tokens.
    world.sb.cli("identity", "delete", "--owner", owner)
    code, out = world.run_workload(env, vault, "db-password")
    assert code == 1 and out["error"] in {"ClientAuthenticationError", "CredentialUnavailableError"}, out


@pytest.mark.parametrize("form", ["app-service", "arc"])
def test_user_assigned_identity_selected_by_client_id(world, form):
    if form == "arc":
        _need_arc(world)
    name = unique("uami")
    identity = world.msi.user_assigned_identities.create_or_update(RG, name, {"location": "local"})
    vault, scope = world.rbac_vault_with_secret("api-key", "k-123")
    world.assign(scope, SECRETS_USER, identity.principal_id)
    env = world.env("--name", name, form=form)
    assert env["AZURE_CLIENT_ID"] == identity.client_id
    code, out = world.run_workload(env, vault, "api-key", selector="client_id")
    assert (code, out) == (0, {"value": "k-123"}), out

    # A client_id naming another identity is refused, not silently replaced.
    other = dict(env, AZURE_CLIENT_ID=str(uuid.uuid4()))
    code, out = world.run_workload(other, vault, "api-key", selector="client_id")
    assert code == 1 and "No managed identity matching" in out["message"], out
    # Without a role on the vault the token is good but the vault says no.
    bare = world.msi.user_assigned_identities.create_or_update(RG, unique("uami"), {"location": "local"})
    code, out = world.run_workload(world.env("--name", bare.name, form=form), vault, "api-key",
                                   selector="client_id")
    assert code == 1 and out["error"] == "HttpResponseError" and "ForbiddenByRbac" in out["message"], out


@pytest.mark.parametrize("form", ["app-service", "arc"])
def test_azure_vault_resource_name_gives_a_vault_token(world, form):
    """ManagedIdentityCredential asked for https://vault.azure.net gets a token the vault takes."""
    if form == "arc":
        _need_arc(world)
    name = unique("uami")
    identity = world.msi.user_assigned_identities.create_or_update(RG, name, {"location": "local"})
    vault, scope = world.rbac_vault_with_secret("api-key", "k-azure-name")
    world.assign(scope, SECRETS_USER, identity.principal_id)
    env = world.env("--name", name, form=form)
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).parent / "workloads" / "read_as_azure_vault.py"),
         world.sb.vault_url(vault), "api-key", identity.client_id],
        env=clean, capture_output=True, text=True, timeout=120,
    )
    assert json.loads(proc.stdout.splitlines()[-1]) == {"status": 200, "value": "k-azure-name"}, proc.stderr


def test_app_service_form_refuses_a_wrong_header(world):
    name = unique("uami")
    world.msi.user_assigned_identities.create_or_update(RG, name, {"location": "local"})
    vault, _ = world.rbac_vault_with_secret("s", "v")
    env = world.env("--name", name, form="app-service")
    wrong = dict(env, IDENTITY_HEADER=env["IDENTITY_HEADER"][:-4] + "AAAA")
    code, out = world.run_workload(wrong, vault, "s")
    assert code == 1 and "401" in out["message"], out
    assert env["IDENTITY_HEADER"] not in out["message"]


def test_arc_challenge_is_single_use(world):
    """Azure Arc's protocol step by step, as MSAL runs it: a reused challenge gets nothing."""
    _need_arc(world)
    name = unique("uami")
    identity = world.msi.user_assigned_identities.create_or_update(RG, name, {"location": "local"})
    env = world.env("--name", name, form="arc")
    url = env["IDENTITY_ENDPOINT"]
    params = {"api-version": "2020-06-01", "resource": f"https://vault.localhost:{world.sb.port}"}
    first = requests.get(url, params=params, headers={"Metadata": "true"})
    assert first.status_code == 401
    scheme, path = first.headers["WWW-Authenticate"].split("=")
    assert scheme == "Basic realm" and Path(path).parent == ARC_DIR and path.endswith(".key")
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    secret = Path(path).read_text()
    ok = requests.get(url, params=params, headers={"Metadata": "true", "Authorization": f"Basic {secret}"})
    assert ok.status_code == 200 and ok.json()["object_id"] == identity.principal_id
    assert not Path(path).exists()
    again = requests.get(url, params=params, headers={"Metadata": "true", "Authorization": f"Basic {secret}"})
    assert again.status_code == 401 and "access_token" not in again.text
    no_metadata = requests.get(url, params=params)
    assert no_metadata.status_code == 400


# --- certificate credentials ------------------------------------------------------------------


def _cert_principal(world: World, tmp_path: Path, *, days: int = 30):
    """A service principal with a registered certificate and Get on a fresh RBAC vault."""
    sp = world.sb.create_principal()
    pem, _ = _cert(sp.client_id, days=days)
    path = tmp_path / f"{sp.client_id}.pem"
    path.write_bytes(pem)
    reg = json.loads(world.sb.cli("identity", "credential", "add", "--client-id", sp.client_id,
                                  "--certificate", str(path)).stdout)
    assert reg["type"] == "AsymmetricX509Cert" and len(reg["keyId"]) == 40
    vault, scope = world.rbac_vault_with_secret("cert-secret", "from-cert")
    world.assign(scope, SECRETS_USER, sp.object_id)
    return sp, path, vault


@pytest.mark.parametrize("send_chain", [False, True])
def test_certificate_credential_reads_a_secret(world, tmp_path, send_chain):
    sp, path, vault = _cert_principal(world, tmp_path)
    cred = CertificateCredential(
        sp.tenant_id, sp.client_id, str(path), authority=world.sb.authority,
        disable_instance_discovery=True, send_certificate_chain=send_chain,
    )
    client = SecretClient(world.sb.vault_url(vault), cred)
    assert client.get_secret("cert-secret").value == "from-cert"
    client.close()


def test_a_replayed_assertion_is_refused(world, tmp_path):
    """The exact request MSAL sent, sent again: the jti was already used."""
    sp, path, _ = _cert_principal(world, tmp_path)
    sent = []

    def capture(request):
        if request.http_request.url.endswith("/oauth2/v2.0/token"):
            sent.append(dict(request.http_request.content))

    cred = CertificateCredential(sp.tenant_id, sp.client_id, str(path), authority=world.sb.authority,
                                 disable_instance_discovery=True, raw_request_hook=capture)
    cred.get_token(f"https://vault.localhost:{world.sb.port}/.default")
    assert len(sent) == 1
    form = sent[0]
    assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    assertion = form["client_assertion"]
    assertion = assertion.decode() if isinstance(assertion, bytes) else assertion
    header = json.loads(_b64url(assertion.split(".")[0]))
    assert header["alg"] == "RS256" and "x5t" in header
    replay = requests.post(f"{world.sb.authority}/{sp.tenant_id}/oauth2/v2.0/token", data=form)
    assert replay.status_code == 401, replay.text
    assert replay.json()["error"] == "invalid_client" and "already used" in replay.json()["error_description"]


def test_an_unknown_client_is_refused(world, tmp_path):
    pem, _ = _cert("nobody")
    path = tmp_path / "nobody.pem"
    path.write_bytes(pem)
    cred = CertificateCredential(world.sb.creds["tenant_id"], str(uuid.uuid4()), str(path),
                                 authority=world.sb.authority, disable_instance_discovery=True)
    with pytest.raises(ClientAuthenticationError, match="AADSTS700016"):
        cred.get_token(f"https://vault.localhost:{world.sb.port}/.default")


def test_an_unregistered_certificate_is_refused(world, tmp_path):
    sp, _, _ = _cert_principal(world, tmp_path)
    pem, _ = _cert("impostor")
    other = tmp_path / "impostor.pem"
    other.write_bytes(pem)
    cred = CertificateCredential(sp.tenant_id, sp.client_id, str(other), authority=world.sb.authority,
                                 disable_instance_discovery=True)
    with pytest.raises(ClientAuthenticationError, match="AADSTS700027"):
        cred.get_token(f"https://vault.localhost:{world.sb.port}/.default")


def test_an_expired_certificate_is_refused(tmp_path_factory, vault_host_resolution, tmp_path):
    """Registered while valid; two days later (server clock moved) it no longer authenticates."""
    data_dir = tmp_path_factory.mktemp("strongbox-clock")
    proc, port, creds = _start(data_dir, ["--dev-clock"])
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("REQUESTS_CA_BUNDLE", creds["ca_cert"])
            sb = Strongbox(data_dir, port, creds)
            sp = sb.create_principal()
            pem, _ = _cert(sp.client_id, days=1)
            path = tmp_path / "short.pem"
            path.write_bytes(pem)
            sb.cli("identity", "credential", "add", "--client-id", sp.client_id, "--certificate", str(path))
            scope = f"https://vault.localhost:{port}/.default"

            def credential():
                return CertificateCredential(sp.tenant_id, sp.client_id, str(path), authority=sb.authority,
                                             disable_instance_discovery=True)

            assert credential().get_token(scope).token
            r = requests.post(f"{sb.authority}/_dev/clock", params={"advance_secs": 2 * 86400})
            assert r.status_code == 200
            with pytest.raises(ClientAuthenticationError, match="certificate .* is expired"):
                credential().get_token(scope)
            sb.close()
    finally:
        _stop(proc)


# --- management SDKs --------------------------------------------------------------------------


def test_user_assigned_identities_with_azure_mgmt_msi(world):
    name = unique("uami")
    created = world.msi.user_assigned_identities.create_or_update(RG, name, {"location": "local", "tags": {"team": "a"}})
    assert created.type == "Microsoft.ManagedIdentity/userAssignedIdentities"
    assert created.id.endswith(f"/resourceGroups/{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}")
    assert created.tenant_id == world.sb.creds["tenant_id"] and created.principal_id and created.client_id
    got = world.msi.user_assigned_identities.get(RG, name)
    assert (got.principal_id, got.tags) == (created.principal_id, {"team": "a"})
    assert world.msi.user_assigned_identities.update(RG, name, {"tags": {"team": "b"}}).tags == {"team": "b"}
    assert name in [i.name for i in world.msi.user_assigned_identities.list_by_resource_group(RG)]
    assert name in [i.name for i in world.msi.user_assigned_identities.list_by_subscription()]
    world.msi.user_assigned_identities.delete(RG, name)
    with pytest.raises(HttpResponseError) as e:
        world.msi.user_assigned_identities.get(RG, name)
    assert e.value.status_code == 404
    with pytest.raises(HttpResponseError) as e:
        world.msi.user_assigned_identities.create_or_update(RG, "x!", {"location": "local"})
    assert e.value.status_code == 400


def test_role_assignments_with_azure_mgmt_authorization(world):
    vault, scope = world.rbac_vault_with_secret("s", "v")
    sp = world.sb.create_principal()
    definitions = {d.role_name: d for d in world.auth.role_definitions.list(f"/subscriptions/{world.sub}")}
    assert {"Owner", "Reader", "Key Vault Administrator", SECRETS_USER, SECRETS_OFFICER, "Key Vault Reader"} <= set(definitions)
    user = definitions[SECRETS_USER]
    assert user.permissions[0].data_actions == [
        "Microsoft.KeyVault/vaults/secrets/getSecret/action",
        "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
    ]
    assert world.auth.role_definitions.get(scope, user.name).role_name == SECRETS_USER

    client = world.sb.client(vault, sp)
    with pytest.raises(HttpResponseError) as e:
        client.get_secret("s")
    assert e.value.status_code == 403

    secret_scope = f"{scope}/secrets/s"
    name = str(uuid.uuid4())
    ra = world.auth.role_assignments.create(secret_scope, name, {
        "role_definition_id": user.id, "principal_id": sp.object_id, "principal_type": "ServicePrincipal"})
    assert (ra.scope, ra.principal_id, ra.role_definition_id) == (secret_scope, sp.object_id, user.id)
    assert world.auth.role_assignments.get(secret_scope, name).name == name
    assert world.auth.role_assignments.get_by_id(ra.id).principal_id == sp.object_id
    assert client.get_secret("s").value == "v"
    # Granted on that secret only.
    world.sb.client(vault).set_secret("other", "x")
    with pytest.raises(HttpResponseError) as e:
        client.get_secret("other")
    assert e.value.status_code == 403

    at_vault = [a.name for a in world.auth.role_assignments.list_for_scope(scope, filter="atScope()")]
    assert name not in at_vault, "atScope() leaves out assignments beneath the scope"
    under = [a.name for a in world.auth.role_assignments.list_for_scope(scope)]
    assert name in under
    mine = list(world.auth.role_assignments.list_for_subscription(filter=f"principalId eq '{sp.object_id}'"))
    assert [a.name for a in mine] == [name]

    deleted = world.auth.role_assignments.delete(secret_scope, name)
    assert deleted.name == name
    assert world.auth.role_assignments.delete(secret_scope, name) is None
    with pytest.raises(HttpResponseError) as e:
        client.get_secret("s")
    assert e.value.status_code == 403

    # Only an Owner may assign: the principal itself, even as Secrets Officer, may not.
    world.assign(scope, SECRETS_OFFICER, sp.object_id)
    sp_auth = AuthorizationManagementClient(world.sb.credential(sp), world.sub, base_url=world.sb.authority)
    with pytest.raises(HttpResponseError) as e:
        sp_auth.role_assignments.create(scope, str(uuid.uuid4()), {
            "role_definition_id": user.id, "principal_id": sp.object_id})
    assert e.value.status_code == 403 and e.value.error.code == "AuthorizationFailed"
