"""The Azure CLI (azure-cli from PyPI, unmodified) against Strongbox through a registered cloud:
cloud registration (by metadata discovery and with explicit endpoints), `az login
--service-principal` with subscription discovery, and the `az keyvault`, `az keyvault secret`,
`az lock`, `az role assignment` and `az identity` command groups. Every command is asserted on
its output, not only its exit code (az prints `[]` for some failures).

The CLI lives in its own venv (its pinned management SDKs differ from the suite's); scripts/test.sh
installs it and names it in STRONGBOX_AZ. Each test module run has its own AZURE_CONFIG_DIR.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from conftest import unique

AZ = os.environ.get("STRONGBOX_AZ", "")
SITE = Path(__file__).parent / "azcli_site"
CLOUD = "Strongbox"


class Az:
    """Runs `az` with its own config dir, trusting the server's CA."""

    def __init__(self, sb, config_dir: Path):
        self.sb = sb
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(config_dir),
            "AZURE_CONFIG_DIR": str(config_dir),
            "REQUESTS_CA_BUNDLE": sb.creds["ca_cert"],
            "PYTHONPATH": str(SITE),
            "AZURE_CORE_COLLECT_TELEMETRY": "0",
            "AZURE_CORE_NO_COLOR": "1",
        }

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([AZ, *args], env=self.env, capture_output=True, text=True, timeout=180)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"az {' '.join(args)} exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
            )
        return proc

    def json(self, *args: str):
        out = self.run(*args, "-o", "json").stdout
        return json.loads(out) if out.strip() else None

    def fails(self, *args: str) -> str:
        proc = self.run(*args, check=False)
        assert proc.returncode != 0, f"az {' '.join(args)} succeeded: {proc.stdout}"
        return proc.stderr

    def login(self) -> list:
        c = self.sb.creds
        self.run("config", "set", "core.instance_discovery=false")
        return self.json("login", "--service-principal", "-u", c["client_id"], "-p", c["client_secret"],
                         "--tenant", c["tenant_id"])


@pytest.fixture(scope="module")
def az(sb, tmp_path_factory) -> Az:
    """A CLI on a cloud registered by metadata discovery, logged in as the dev admin."""
    if not AZ:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but STRONGBOX_AZ is not set: the Azure CLI tests cannot run")
        pytest.skip("STRONGBOX_AZ is not set (scripts/test.sh installs the Azure CLI)")
    cli = Az(sb, tmp_path_factory.mktemp("az"))
    cli.run("cloud", "register", "-n", CLOUD, "--endpoint-resource-manager", sb.authority)
    cli.run("cloud", "set", "-n", CLOUD)
    cli.login()
    return cli


def rg() -> str:
    return unique("rg")


def admin_object_id(sb) -> str:
    token = sb.credential(sb.admin).get_token(f"{sb.authority}/.default").token
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["oid"]


def test_cloud_from_metadata_discovery_and_login_finds_the_subscription(az):
    cloud = az.json("cloud", "show", "-n", CLOUD)
    a = az.sb.authority
    assert cloud["endpoints"]["activeDirectory"] == a
    assert cloud["endpoints"]["resourceManager"] == a
    assert cloud["endpoints"]["activeDirectoryResourceId"] == f"{a}/"
    assert cloud["suffixes"]["keyvaultDns"] == f".vault.localhost:{az.sb.port}"
    account = az.json("account", "show")
    assert account["id"] == az.sb.creds["subscription_id"]
    assert account["tenantId"] == az.sb.creds["tenant_id"]
    assert account["user"] == {"name": az.sb.creds["client_id"], "type": "servicePrincipal"}
    subs = az.json("account", "list")
    assert [s["id"] for s in subs] == [az.sb.creds["subscription_id"]]


def test_cloud_with_explicit_endpoints(sb, tmp_path):
    if not AZ:
        pytest.skip("no Azure CLI")
    cli = Az(sb, tmp_path)
    a = sb.authority
    cli.run("cloud", "register", "-n", "StrongboxExplicit",
            "--endpoint-active-directory", a,
            "--endpoint-active-directory-resource-id", f"{a}/",
            "--endpoint-resource-manager", a,
            "--endpoint-microsoft-graph-resource-id", f"{a}/graph/",
            "--suffix-keyvault-dns", f".vault.localhost:{sb.port}",
            "--skip-endpoint-discovery")
    cli.run("cloud", "set", "-n", "StrongboxExplicit")
    subs = cli.login()
    assert [s["id"] for s in subs] == [sb.creds["subscription_id"]]
    name = unique()
    cli.run("keyvault", "secret", "set", "--vault-name", "dev", "-n", name, "--value", "explicit")
    assert cli.run("keyvault", "secret", "show", "--vault-name", "dev", "-n", name,
                   "--query", "value", "-o", "tsv").stdout.strip() == "explicit"


def test_keyvault_create_show_list_update(az):
    group, name = rg(), "k" + unique()[2:14]
    created = az.json("keyvault", "create", "-n", name, "-g", group, "-l", "westeurope")
    assert created["name"] == name and created["resourceGroup"] == group
    assert created["properties"]["enableRbacAuthorization"] is True
    assert created["properties"]["vaultUri"] == f"https://{name}.vault.localhost:{az.sb.port}/"
    # Without -g the CLI finds the group through a generic resource list filtered by name.
    shown = az.json("keyvault", "show", "-n", name)
    assert shown["id"] == created["id"]
    assert name in [v["name"] for v in az.json("keyvault", "list")]
    assert [v["name"] for v in az.json("keyvault", "list", "-g", group)] == [name]
    updated = az.json("keyvault", "update", "-n", name, "--set", "tags.env=prod")
    assert updated["tags"] == {"env": "prod"}
    assert az.json("keyvault", "show", "-n", name)["tags"] == {"env": "prod"}


def test_keyvault_with_access_policies_grants_the_creator_and_set_policy(az):
    group, name = rg(), "p" + unique()[2:14]
    created = az.json("keyvault", "create", "-n", name, "-g", group, "-l", "westeurope",
                      "--enable-rbac-authorization", "false")
    # The CLI looked the caller up in the directory (/me refused for an app, then by app id).
    policies = created["properties"]["accessPolicies"]
    assert [p["objectId"] for p in policies] == [admin_object_id(az.sb)]
    assert "get" in policies[0]["permissions"]["secrets"]
    other = str(uuid.uuid4())  # policies name principals by object id
    vault = az.json("keyvault", "set-policy", "-n", name, "--object-id", other,
                    "--secret-permissions", "get", "list")
    got = {p["objectId"]: sorted(p["permissions"]["secrets"]) for p in vault["properties"]["accessPolicies"]}
    assert got[other] == ["get", "list"] and admin_object_id(az.sb) in got
    # The creator's policy works on the data plane.
    az.run("keyvault", "secret", "set", "--vault-name", name, "-n", "a", "--value", "b")


def test_keyvault_delete_list_deleted_recover_purge(az):
    group, name = rg(), "d" + unique()[2:14]
    az.json("keyvault", "create", "-n", name, "-g", group, "-l", "westeurope")
    az.run("keyvault", "delete", "-n", name)
    assert az.run("keyvault", "show", "-n", name, check=False).returncode != 0
    # Vaults and managed HSMs are listed together; Strongbox has no HSMs (an empty list).
    deleted = az.json("keyvault", "list-deleted")
    assert name in [d["name"] for d in deleted]
    mine = [d for d in deleted if d["name"] == name][0]
    assert mine["properties"]["vaultId"].endswith(f"/resourceGroups/{group}/providers/Microsoft.KeyVault/vaults/{name}")
    assert az.json("keyvault", "list-deleted", "--resource-type", "hsm") == []
    az.run("keyvault", "recover", "-n", name)
    assert az.json("keyvault", "show", "-n", name)["name"] == name
    az.run("keyvault", "delete", "-n", name)
    az.run("keyvault", "purge", "-n", name)
    assert name not in [d["name"] for d in az.json("keyvault", "list-deleted")]


def test_keyvault_secret_commands(az):
    name = unique()
    set_ = az.json("keyvault", "secret", "set", "--vault-name", "dev", "-n", name, "--value", "v1")
    assert set_["value"] == "v1" and set_["id"].startswith(f"https://dev.vault.localhost:{az.sb.port}/secrets/{name}/")
    assert az.json("keyvault", "secret", "show", "--vault-name", "dev", "-n", name)["value"] == "v1"
    assert name in [s["name"] for s in az.json("keyvault", "secret", "list", "--vault-name", "dev")]
    az.run("keyvault", "secret", "delete", "--vault-name", "dev", "-n", name)
    deleted = az.json("keyvault", "secret", "list-deleted", "--vault-name", "dev")
    assert name in [d["name"] for d in deleted]
    az.run("keyvault", "secret", "recover", "--vault-name", "dev", "-n", name)
    assert az.json("keyvault", "secret", "show", "--vault-name", "dev", "-n", name)["value"] == "v1"


def test_lock_refuses_a_vault_delete_until_removed(az):
    group, name = rg(), "l" + unique()[2:14]
    az.json("keyvault", "create", "-n", name, "-g", group, "-l", "westeurope")
    lock = az.json("lock", "create", "-n", "keep", "--lock-type", "CanNotDelete", "-g", group)
    assert lock["level"] == "CanNotDelete" and lock["name"] == "keep"
    err = az.fails("keyvault", "delete", "-n", name)
    assert "ScopeLocked" in err
    assert [l["name"] for l in az.json("lock", "list", "-g", group)] == ["keep"]
    az.run("lock", "delete", "-n", "keep", "-g", group)
    assert az.json("lock", "list", "-g", group) == []
    az.run("keyvault", "delete", "-n", name)


def test_identity_and_role_assignment_commands(az):
    group, name = rg(), "r" + unique()[2:14]
    vault = az.json("keyvault", "create", "-n", name, "-g", group, "-l", "westeurope")
    ident = az.json("identity", "create", "-n", "worker", "-g", group, "-l", "westeurope")
    assert ident["name"] == "worker" and ident["tenantId"] == az.sb.creds["tenant_id"]
    shown = az.json("identity", "show", "-n", "worker", "-g", group)
    assert shown["principalId"] == ident["principalId"]
    # --assignee by object id: the CLI asks the directory for the object's type.
    ra = az.json("role", "assignment", "create", "--assignee", ident["principalId"],
                 "--role", "Key Vault Secrets User", "--scope", vault["id"])
    assert ra["principalId"] == ident["principalId"] and ra["principalType"] == "ServicePrincipal"
    assert ra["roleDefinitionId"].endswith("/4633458b-17de-408a-b874-0445c86b69e6")
    listed = az.json("role", "assignment", "list", "--scope", vault["id"])
    mine = [a for a in listed if a["principalId"] == ident["principalId"]]
    assert len(mine) == 1 and mine[0]["roleDefinitionName"] == "Key Vault Secrets User"
    assert mine[0]["principalName"] == ident["clientId"]
    az.run("role", "assignment", "delete", "--assignee", ident["principalId"], "--scope", vault["id"])
    assert [a for a in az.json("role", "assignment", "list", "--scope", vault["id"])
            if a["principalId"] == ident["principalId"]] == []
