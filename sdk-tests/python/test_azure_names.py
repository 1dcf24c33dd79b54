"""Azure's own resource names and the secrets spec's edges, as hand-written clients and the
official SDK meet them: tokens asked for https://vault.azure.net or ARM's names, deleted-secret
list ids, outContentType, and JSON bodies that are not objects."""

from __future__ import annotations

import requests

from conftest import unique


def _token(sb, scope: str) -> str:
    return sb.credential(sb.admin).get_token(scope).token


def test_a_token_for_vault_azure_net_reads_a_secret(sb, dev, name):
    dev.set_secret(name, "azure-named")
    for scope in ("https://vault.azure.net/.default", "https://vault.azure.net//.default"):
        r = requests.get(f"{sb.vault_url('dev')}/secrets/{name}", params={"api-version": "7.6"},
                         headers={"Authorization": f"Bearer {_token(sb, scope)}"})
        assert r.status_code == 200 and r.json()["value"] == "azure-named", (scope, r.text)


def test_tokens_for_arm_names_list_subscriptions(sb):
    for scope in ("https://management.azure.com/.default",
                  "https://management.core.windows.net//.default",
                  f"{sb.authority}/.default"):
        r = requests.get(f"{sb.authority}/subscriptions", params={"api-version": "2022-12-01"},
                         headers={"Authorization": f"Bearer {_token(sb, scope)}"})
        assert r.status_code == 200, (scope, r.text)
        assert [s["subscriptionId"] for s in r.json()["value"]] == [sb.creds["subscription_id"]]


def test_a_vault_token_is_not_a_management_token(sb):
    r = requests.get(f"{sb.authority}/subscriptions", params={"api-version": "2022-12-01"},
                     headers={"Authorization": f"Bearer {_token(sb, 'https://vault.azure.net/.default')}"})
    assert r.status_code == 401


def test_subscription_get_and_tenants(sb):
    h = {"Authorization": f"Bearer {_token(sb, f'{sb.authority}/.default')}"}
    sub = sb.creds["subscription_id"]
    r = requests.get(f"{sb.authority}/subscriptions/{sub}", params={"api-version": "2022-12-01"}, headers=h)
    assert r.status_code == 200 and r.json()["tenantId"] == sb.creds["tenant_id"]
    missing = requests.get(f"{sb.authority}/subscriptions/{unique('x')}", params={"api-version": "2022-12-01"},
                           headers=h)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "SubscriptionNotFound"
    t = requests.get(f"{sb.authority}/tenants", params={"api-version": "2022-12-01"}, headers=h)
    assert [x["tenantId"] for x in t.json()["value"]] == [sb.creds["tenant_id"]]
    # Without a token: ARM's 401.
    assert requests.get(f"{sb.authority}/subscriptions", params={"api-version": "2022-12-01"}).status_code == 401


def test_cloud_metadata_document(sb):
    r = requests.get(f"{sb.authority}/metadata/endpoints", params={"api-version": "2022-09-01"})
    assert r.status_code == 200
    doc = r.json()
    assert doc["authentication"]["loginEndpoint"] == sb.authority
    assert doc["resourceManager"] == f"{sb.authority}/"
    assert doc["suffixes"]["keyVaultDns"] == f"vault.localhost:{sb.port}"
    legacy = requests.get(f"{sb.authority}/metadata/endpoints", params={"api-version": "2019-05-01"}).json()
    assert legacy == [doc]


def test_deleted_secret_items_are_named_by_their_secret_id(sb, dev, name):
    dev.set_secret(name, "x")
    dev.begin_delete_secret(name).wait()
    items = [d for d in dev.list_deleted_secrets() if d.name == name]
    assert len(items) == 1
    assert items[0].id == f"{sb.vault_url('dev')}/secrets/{name}"
    assert items[0].recovery_id == f"{sb.vault_url('dev')}/deletedsecrets/{name}"


def test_out_content_type_must_be_a_supported_format(sb, dev, name):
    dev.set_secret(name, "plain")
    h = {"Authorization": f"Bearer {_token(sb, 'https://vault.azure.net/.default')}"}
    url = f"{sb.vault_url('dev')}/secrets/{name}"
    for bad in ("", "bogus", "application/json"):
        r = requests.get(url, params={"api-version": "2025-07-01", "outContentType": bad}, headers=h)
        assert r.status_code == 400 and r.json()["error"]["code"] == "BadParameter", (bad, r.text)
        assert "plain" not in r.text
    ok = requests.get(url, params={"api-version": "2025-07-01", "outContentType": "application/x-pem-file"},
                      headers=h)
    assert ok.status_code == 200 and ok.json()["value"] == "plain"


def test_bodies_that_are_not_json_objects_are_refused(sb, dev, name):
    version = dev.set_secret(name, "keep").properties.version
    h = {"Authorization": f"Bearer {_token(sb, 'https://vault.azure.net/.default')}",
         "Content-Type": "application/json"}
    base = sb.vault_url("dev")
    for body in ("[]", "5", '"x"', "null", "true", ' [{"value":"y"}]'):
        for method, path in (("PATCH", f"/secrets/{name}/{version}"), ("PUT", f"/secrets/{name}"),
                             ("POST", "/secrets/restore")):
            r = requests.request(method, base + path, params={"api-version": "7.6"}, data=body, headers=h)
            assert r.status_code == 400 and r.json()["error"]["code"] == "BadParameter", (method, body, r.text)
    assert dev.get_secret(name).value == "keep"
    mgmt = {"Authorization": f"Bearer {_token(sb, f'{sb.authority}/.default')}",
            "Content-Type": "application/json"}
    vault = f"{sb.authority}/subscriptions/{sb.creds['subscription_id']}/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/{unique('v')[:20]}"
    r = requests.put(vault, params={"api-version": "2023-07-01"}, data="[]", headers=mgmt)
    assert r.status_code == 400 and r.json()["error"]["code"] == "InvalidRequestContent", r.text
