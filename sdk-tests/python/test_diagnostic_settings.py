"""Diagnostic settings on a vault with the official azure-mgmt-monitor SDK (6.x, the last with the
diagnostic_settings operation group), against the real server; then the file sink's output is
verified with `strongbox audit verify --dir`.

The storage account (a directory on the server) is created with the Strongbox CLI: there is no
Azure SDK for Strongbox's local storage accounts.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.monitor import MonitorManagementClient
from azure.mgmt.monitor.models import DiagnosticSettingsResource, LogSettings, RetentionPolicy

from conftest import STRONGBOX_BIN, unique


def client_cli(sb, *args: str) -> subprocess.CompletedProcess:
    """A client command of the CLI, with the dev credentials."""
    env = dict(os.environ, STRONGBOX_CREDENTIALS=str(sb.data_dir / "dev-credentials.json"))
    proc = subprocess.run([STRONGBOX_BIN, *args], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, f"strongbox {' '.join(args)}: {proc.stdout}{proc.stderr}"
    return proc


@pytest.fixture
def monitor(sb):
    c = MonitorManagementClient(sb.credential(sb.admin), sb.creds["subscription_id"], base_url=sb.authority)
    yield c
    c.close()


def test_diagnostic_settings_round_trip_and_files(sb, monitor):
    sub, rg = sb.creds["subscription_id"], sb.creds["resource_group"]
    account = "sdk" + unique("a").replace("-", "")[:12]
    client_cli(sb, "storage", "create", "--name", account, "--max-file-bytes", "2048")
    account_id = f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Storage/storageAccounts/{account}"
    # The SDK puts resource_uri in the path unquoted after a slash: pass it without one.
    vault_uri = f"subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/dev"
    name = unique("diag")

    created = monitor.diagnostic_settings.create_or_update(
        vault_uri,
        name,
        DiagnosticSettingsResource(
            storage_account_id=account_id,
            logs=[LogSettings(category="AuditEvent", enabled=True,
                              retention_policy=RetentionPolicy(enabled=False, days=0))],
        ),
    )
    assert created.name == name
    assert created.storage_account_id == account_id
    assert created.logs[0].category == "AuditEvent" and created.logs[0].enabled
    got = monitor.diagnostic_settings.get(vault_uri, name)
    assert got.id.endswith(f"/diagnosticSettings/{name}")
    assert name in [s.name for s in monitor.diagnostic_settings.list(vault_uri)]

    # Traffic reaches the files, which verify from themselves alone.
    client = sb.client()
    for i in range(20):
        client.set_secret(unique("diag"), f"value-{i}")
    chain_root = sb.data_dir / "storage" / account
    deadline = time.monotonic() + 30
    while True:
        proc = subprocess.run([STRONGBOX_BIN, "audit", "verify", "--dir", str(chain_root), "-o", "json"],
                              capture_output=True, text=True, timeout=60)
        if proc.returncode == 0 and sum(r["records"] for r in json.loads(proc.stdout)) >= 21:
            break
        assert time.monotonic() < deadline, proc.stdout + proc.stderr
        time.sleep(0.2)
    assert json.loads(proc.stdout)[0]["files"] >= 2  # rotated at 2 KiB

    # Refusals the SDK surfaces: an unsupported destination, a missing setting.
    with pytest.raises(HttpResponseError) as e:
        monitor.diagnostic_settings.create_or_update(
            vault_uri, unique("diag"),
            DiagnosticSettingsResource(workspace_id="/subscriptions/x/workspaces/y",
                                       logs=[LogSettings(category="AuditEvent", enabled=True)]))
    assert e.value.status_code == 400
    monitor.diagnostic_settings.delete(vault_uri, name)
    with pytest.raises(ResourceNotFoundError):
        monitor.diagnostic_settings.get(vault_uri, name)
    client_cli(sb, "storage", "delete", "--name", account)
