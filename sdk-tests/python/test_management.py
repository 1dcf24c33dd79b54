"""The vault lifecycle and resource locks, driven by the official, unmodified management SDKs:
azure-mgmt-keyvault's KeyVaultManagementClient and azure-mgmt-resource-locks' ManagementLockClient
(the lock client left azure-mgmt-resource in 25.0; the import path is the same).

Both clients take `base_url=authority` and ask for their default token scope,
`https://management.azure.com/.default`, which Strongbox's token service accepts as its
management audience: no `credential_scopes` override is needed.

Each test uses its own resource group and vault names, so tests are independent of each other.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import timedelta

import pytest
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.keyvault.secrets import SecretClient
from azure.mgmt.keyvault import KeyVaultManagementClient
from azure.mgmt.keyvault.models import (
    AccessPolicyEntry,
    Permissions,
    Sku,
    VaultAccessPolicyParameters,
    VaultAccessPolicyProperties,
    VaultCheckNameAvailabilityParameters,
    VaultCreateOrUpdateParameters,
    VaultPatchParameters,
    VaultPatchProperties,
    VaultProperties,
)
from azure.mgmt.resource.locks import ManagementLockClient
from azure.mgmt.resource.locks.models import ManagementLockObject

from conftest import Principal, unique

LOCATION = "westeurope"
KV = "Microsoft.KeyVault"


def vault_name() -> str:
    return "v" + uuid.uuid4().hex[:12]


def object_id_of(sb, who: Principal) -> str:
    """The principal's object id, as its own management token says (the `oid` claim)."""
    if who.object_id:
        return who.object_id
    token = sb.credential(who).get_token("https://management.azure.com/.default").token
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["oid"]


@pytest.fixture(scope="module")
def admin_oid(sb) -> str:
    return object_id_of(sb, sb.admin)


def kv_client(sb, who: Principal | None = None) -> KeyVaultManagementClient:
    return KeyVaultManagementClient(
        sb.credential(who or sb.admin), sb.creds["subscription_id"], base_url=sb.authority
    )


def lock_client(sb, who: Principal | None = None) -> ManagementLockClient:
    return ManagementLockClient(
        sb.credential(who or sb.admin), sb.creds["subscription_id"], base_url=sb.authority
    )


@pytest.fixture(scope="module")
def kv(sb) -> KeyVaultManagementClient:
    return kv_client(sb)


@pytest.fixture(scope="module")
def locks(sb) -> ManagementLockClient:
    return lock_client(sb)


@pytest.fixture
def rg() -> str:
    return unique("rg")


def policy(sb, oid: str, secrets=("all",), **others) -> AccessPolicyEntry:
    return AccessPolicyEntry(
        tenant_id=sb.creds["tenant_id"],
        object_id=oid,
        permissions=Permissions(secrets=list(secrets), **others),
    )


def params(sb, policies=(), **props) -> VaultCreateOrUpdateParameters:
    return VaultCreateOrUpdateParameters(
        location=LOCATION,
        properties=VaultProperties(
            tenant_id=sb.creds["tenant_id"],
            sku=Sku(family="A", name="standard"),
            access_policies=list(policies),
            **props,
        ),
    )


def create(kv, sb, rg, name, policies=(), **props):
    return kv.vaults.begin_create_or_update(rg, name, params(sb, policies, **props)).result()


def secrets_of(sb, name) -> SecretClient:
    """A data-plane client for the admin on vault `name` (its host resolves via conftest)."""
    return sb.client(name)


def code_of(excinfo) -> str:
    return excinfo.value.error.code


# --- vaults -------------------------------------------------------------------------------------


def test_create_get_update_and_list_a_vault(sb, kv, rg, admin_oid):
    """Every property round-trips; the vault answers on the data plane at its vaultUri."""
    name = vault_name()
    created = create(
        kv, sb, rg, name,
        [policy(sb, admin_oid, ["get", "set", "list"], keys_property=["get", "wrapKey"], certificates=["list"])],
        soft_delete_retention_in_days=14,
        enabled_for_deployment=True,
    )
    sub = sb.creds["subscription_id"]
    assert created.id == f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/{name}"
    assert (created.name, created.type, created.location) == (name, "Microsoft.KeyVault/vaults", LOCATION)
    p = created.properties
    assert p.tenant_id == sb.creds["tenant_id"]
    assert (p.sku.family, p.sku.name) == ("A", "standard")
    assert p.vault_uri == f"https://{name}.vault.localhost:{sb.port}/"
    assert p.provisioning_state == "Succeeded"
    assert p.enable_soft_delete is True and p.soft_delete_retention_in_days == 14
    assert p.enable_purge_protection is None and p.enable_rbac_authorization is False
    assert p.enabled_for_deployment is True
    [entry] = p.access_policies
    assert entry.object_id == admin_oid
    assert entry.permissions.secrets == ["get", "list", "set"]
    assert entry.permissions.keys_property == ["wrapKey", "get"]  # accepted and echoed, not used
    assert entry.permissions.certificates == ["list"]

    got = kv.vaults.get(rg, name)
    assert got.as_dict() == created.as_dict()

    # The data plane serves the new vault with the policy given at creation.
    client = secrets_of(sb, name)
    client.set_secret("greeting", "hello")
    assert client.get_secret("greeting").value == "hello"

    patched = kv.vaults.update(
        rg, name,
        VaultPatchParameters(
            tags={"env": "test"},
            properties=VaultPatchProperties(enable_purge_protection=True, sku=Sku(family="A", name="premium")),
        ),
    )
    assert patched.tags == {"env": "test"}
    assert patched.properties.enable_purge_protection is True
    assert patched.properties.sku.name == "premium"
    assert patched.properties.soft_delete_retention_in_days == 14
    assert [v.name for v in kv.vaults.list_by_resource_group(rg)] == [name]
    assert name in [v.name for v in kv.vaults.list_by_subscription()]


def test_put_replaces_an_existing_vault(sb, kv, rg, admin_oid):
    """create_or_update on an existing vault is a full replacement of its properties."""
    name = vault_name()
    create(kv, sb, rg, name, [policy(sb, admin_oid)], enable_rbac_authorization=True)
    other = str(uuid.uuid4())
    replaced = create(kv, sb, rg, name, [policy(sb, other, ["get"])])
    assert replaced.properties.enable_rbac_authorization is False
    assert [e.object_id for e in replaced.properties.access_policies] == [other]
    # The admin's policy went with the replacement: the data plane refuses it now.
    with pytest.raises(HttpResponseError) as e:
        secrets_of(sb, name).set_secret("x", "y")
    assert e.value.status_code == 403


def test_access_policies_add_replace_remove(sb, kv, rg, admin_oid):
    """update_access_policy edits one principal's entry; the data plane follows at once."""
    name = vault_name()
    create(kv, sb, rg, name, [policy(sb, admin_oid, ["get", "set"])])
    reader = sb.create_principal()

    def edit(kind, secrets, **others):
        body = VaultAccessPolicyParameters(
            properties=VaultAccessPolicyProperties(
                access_policies=[policy(sb, reader.object_id, secrets, **others)]
            )
        )
        return kv.vaults.update_access_policy(rg, name, kind, body)

    secrets_of(sb, name).set_secret("s", "v")
    reader_client = sb.client(name, reader)
    with pytest.raises(HttpResponseError) as e:
        reader_client.get_secret("s")
    assert e.value.status_code == 403

    echoed = edit("add", ["get"], storage=["get"])
    assert echoed.properties.access_policies[0].permissions.secrets == ["get"]
    assert reader_client.get_secret("s").value == "v"
    edit("add", ["list"])
    entries = {e.object_id: e for e in kv.vaults.get(rg, name).properties.access_policies}
    assert entries[reader.object_id].permissions.secrets == ["get", "list"]
    assert entries[reader.object_id].permissions.storage == ["get"]

    edit("replace", ["list"])
    entries = {e.object_id: e for e in kv.vaults.get(rg, name).properties.access_policies}
    assert entries[reader.object_id].permissions.secrets == ["list"]
    with pytest.raises(HttpResponseError):
        reader_client.get_secret("s")

    edit("remove", ["list"])
    assert [e.object_id for e in kv.vaults.get(rg, name).properties.access_policies] == [admin_oid]
    with pytest.raises(HttpResponseError) as e:
        edit("merge", ["get"])
    assert e.value.status_code == 400


def test_list_by_resource_group_pages_with_next_link(sb, kv, rg):
    names = sorted(vault_name() for _ in range(5))
    for n in names:
        create(kv, sb, rg, n)
    bodies = []
    pages = [
        [v.name for v in page]
        for page in kv.vaults.list_by_resource_group(
            rg, top=2, raw_response_hook=lambda r: bodies.append(r.http_response.json())
        ).by_page()
    ]
    assert pages == [names[0:2], names[2:4], names[4:5]]
    assert all(b.get("nextLink") for b in bodies[:-1]) and not bodies[-1].get("nextLink")
    assert all(b["nextLink"].startswith(sb.authority) for b in bodies[:-1])


def test_vaults_list_through_the_generic_resources_endpoint(sb, kv, rg):
    """`vaults.list()` calls /subscriptions/{sub}/resources with a resourceType filter (and drops
    the filter on later pages): every live vault comes back, deleted ones do not."""
    names = {vault_name() for _ in range(3)}
    for n in names:
        create(kv, sb, rg, n)
    gone = vault_name()
    create(kv, sb, rg, gone)
    kv.vaults.delete(rg, gone)
    listed = [v for v in kv.vaults.list(top=2)]
    assert names <= {v.name for v in listed} and gone not in {v.name for v in listed}
    assert all(v.type == f"{KV}/vaults" for v in listed)
    with pytest.raises(HttpResponseError) as e:
        list(kv.vaults.list(filter="resourceType eq 'Microsoft.Compute/virtualMachines'"))
    assert e.value.status_code == 400


def test_soft_delete_hides_the_vault_and_recovery_brings_it_back_with_secrets(sb, kv, rg, admin_oid):
    name = vault_name()
    create(kv, sb, rg, name, [policy(sb, admin_oid)], soft_delete_retention_in_days=7)
    client = secrets_of(sb, name)
    first = client.set_secret("db-password", "one")
    second = client.set_secret("db-password", "two")
    client.set_secret("api-key", "k")

    kv.vaults.delete(rg, name)
    with pytest.raises(ResourceNotFoundError):
        kv.vaults.get(rg, name)
    assert name not in [v.name for v in kv.vaults.list_by_resource_group(rg)]
    with pytest.raises(HttpResponseError) as e:
        secrets_of(sb, name).get_secret("db-password")
    assert e.value.status_code == 404

    deleted = kv.vaults.get_deleted(name, LOCATION)
    assert deleted.name == name and deleted.type == "Microsoft.KeyVault/deletedVaults"
    assert deleted.properties.vault_id.endswith(f"/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/{name}")
    assert deleted.properties.scheduled_purge_date - deleted.properties.deletion_date == timedelta(days=7)
    assert deleted.properties.purge_protection_enabled is False
    assert name in [d.name for d in kv.vaults.list_deleted()]

    # The name stays held while the vault is soft-deleted, in any group.
    for group in (rg, unique("rg")):
        with pytest.raises(ResourceExistsError) as e:
            create(kv, sb, group, name)
        assert code_of(e) == "ConflictError"

    recover = VaultCreateOrUpdateParameters(
        location=LOCATION,
        properties=VaultProperties(
            tenant_id=sb.creds["tenant_id"], sku=Sku(family="A", name="standard"), create_mode="recover"
        ),
    )
    recovered = kv.vaults.begin_create_or_update(rg, name, recover).result()
    assert recovered.properties.soft_delete_retention_in_days == 7
    assert [e.object_id for e in recovered.properties.access_policies] == [admin_oid]
    assert name not in [d.name for d in kv.vaults.list_deleted()]

    client = secrets_of(sb, name)
    assert client.get_secret("db-password").value == "two"
    assert client.get_secret("db-password", first.properties.version).value == "one"
    assert client.get_secret("db-password", second.properties.version).value == "two"
    assert client.get_secret("api-key").value == "k"


def test_recover_needs_a_deleted_vault(sb, kv, rg):
    body = VaultCreateOrUpdateParameters(
        location=LOCATION,
        properties=VaultProperties(
            tenant_id=sb.creds["tenant_id"], sku=Sku(family="A", name="standard"), create_mode="recover"
        ),
    )
    with pytest.raises(ResourceNotFoundError) as e:
        kv.vaults.begin_create_or_update(rg, vault_name(), body).result()
    assert code_of(e) == "SoftDeletedVaultDoesNotExist"


def test_purge_removes_the_vault_and_frees_the_name(sb, kv, rg, admin_oid):
    name = vault_name()
    create(kv, sb, rg, name, [policy(sb, admin_oid)])
    secrets_of(sb, name).set_secret("gone-soon", "x")
    kv.vaults.delete(rg, name)
    kv.vaults.begin_purge_deleted(name, LOCATION).result()
    assert name not in [d.name for d in kv.vaults.list_deleted()]
    with pytest.raises(ResourceNotFoundError):
        kv.vaults.get_deleted(name, LOCATION)
    # A new vault of that name starts empty.
    create(kv, sb, unique("rg"), name, [policy(sb, admin_oid)])
    assert [s.name for s in secrets_of(sb, name).list_properties_of_secrets()] == []


def test_purge_protection_refuses_purge_and_cannot_be_turned_off(sb, kv, rg):
    name = vault_name()
    create(kv, sb, rg, name, enable_purge_protection=True)
    with pytest.raises(HttpResponseError) as e:
        kv.vaults.update(
            rg, name, VaultPatchParameters(properties=VaultPatchProperties(enable_purge_protection=False))
        )
    assert e.value.status_code == 400
    kv.vaults.delete(rg, name)
    assert kv.vaults.get_deleted(name, LOCATION).properties.purge_protection_enabled is True
    with pytest.raises(ResourceExistsError) as e:
        kv.vaults.begin_purge_deleted(name, LOCATION).result()
    assert code_of(e) == "PurgeProtectionEnabled"
    assert name in [d.name for d in kv.vaults.list_deleted()]


@pytest.mark.parametrize(
    "props, code",
    [
        ({"enable_soft_delete": False}, "BadRequest"),
        ({"soft_delete_retention_in_days": 6}, "BadRequest"),
        ({"soft_delete_retention_in_days": 91}, "BadRequest"),
        ({"sku": Sku(family="A", name="basic")}, "BadRequest"),
        ({"tenant_id": str(uuid.uuid4())}, "BadRequest"),
    ],
    ids=["soft-delete-off", "retention-6", "retention-91", "sku", "foreign-tenant"],
)
def test_invalid_properties_are_refused_on_create(sb, kv, rg, props, code):
    name = vault_name()
    body = params(sb)
    for k, v in props.items():
        setattr(body.properties, k, v)
    with pytest.raises(HttpResponseError) as e:
        kv.vaults.begin_create_or_update(rg, name, body).result()
    assert (e.value.status_code, code_of(e)) == (400, code)
    with pytest.raises(ResourceNotFoundError):
        kv.vaults.get(rg, name)


def test_retention_and_soft_delete_cannot_change_after_creation(sb, kv, rg):
    name = vault_name()
    create(kv, sb, rg, name, soft_delete_retention_in_days=30)
    for props in (
        VaultPatchProperties(soft_delete_retention_in_days=31),
        VaultPatchProperties(enable_soft_delete=False),
    ):
        with pytest.raises(HttpResponseError) as e:
            kv.vaults.update(rg, name, VaultPatchParameters(properties=props))
        assert e.value.status_code == 400
    assert kv.vaults.get(rg, name).properties.soft_delete_retention_in_days == 30


@pytest.mark.parametrize("bad", ["ab", "1vault", "has_underscore", "ends-", "a--b", "x" * 25])
def test_invalid_vault_names_are_refused(sb, kv, rg, bad):
    with pytest.raises(HttpResponseError) as e:
        kv.vaults.begin_create_or_update(rg, bad, params(sb)).result()
    assert (e.value.status_code, code_of(e)) == (400, "VaultNameNotValid")


def test_vault_names_are_unique_across_groups(sb, kv, rg):
    name = vault_name()
    create(kv, sb, rg, name)
    with pytest.raises(ResourceExistsError) as e:
        create(kv, sb, unique("rg"), name)
    assert code_of(e) == "VaultAlreadyExists"


def test_check_name_availability_follows_the_name_through_delete_and_purge(sb, kv, rg):
    def check(name):
        return kv.vaults.check_name_availability(
            VaultCheckNameAvailabilityParameters(name=name, type="Microsoft.KeyVault/vaults")
        )

    name = vault_name()
    assert check(name).name_available is True
    create(kv, sb, rg, name)
    taken = check(name)
    assert (taken.name_available, taken.reason) == (False, "AlreadyExists")
    kv.vaults.delete(rg, name)
    held = check(name)
    assert (held.name_available, held.reason) == (False, "AlreadyExists")
    assert "deleted state" in held.message
    kv.vaults.begin_purge_deleted(name, LOCATION).result()
    assert check(name).name_available is True
    invalid = check("1-invalid")
    assert (invalid.name_available, invalid.reason) == (False, "AccountNameInvalid")


# --- locks --------------------------------------------------------------------------------------


def resource_lock(locks, rg, name, lock, level, notes=None):
    return locks.management_locks.create_or_update_at_resource_level(
        rg, KV, "", "vaults", name, lock, ManagementLockObject(level=level, notes=notes)
    )


def test_lock_on_a_vault_refuses_delete_and_readonly_refuses_updates(sb, kv, locks, rg, admin_oid):
    name = vault_name()
    create(kv, sb, rg, name, [policy(sb, admin_oid)])
    lock = resource_lock(locks, rg, name, "no-delete", "CanNotDelete", notes="production")
    sub = sb.creds["subscription_id"]
    assert lock.id == (
        f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/{name}"
        "/providers/Microsoft.Authorization/locks/no-delete"
    )
    assert (lock.name, lock.level, lock.notes) == ("no-delete", "CanNotDelete", "production")
    got = locks.management_locks.get_at_resource_level(rg, KV, "", "vaults", name, "no-delete")
    assert got.as_dict() == lock.as_dict()

    with pytest.raises(ResourceExistsError) as e:
        kv.vaults.delete(rg, name)
    assert code_of(e) == "ScopeLocked"
    assert "no-delete" in e.value.error.message and "cannot perform delete operation" in e.value.error.message
    # CanNotDelete still allows changes.
    kv.vaults.update(rg, name, VaultPatchParameters(tags={"a": "b"}))

    resource_lock(locks, rg, name, "frozen", "ReadOnly")
    refused = [
        lambda: kv.vaults.update(rg, name, VaultPatchParameters(tags={"a": "c"})),
        lambda: create(kv, sb, rg, name, [policy(sb, admin_oid)]),
        lambda: kv.vaults.update_access_policy(
            rg, name, "add",
            VaultAccessPolicyParameters(
                properties=VaultAccessPolicyProperties(access_policies=[policy(sb, str(uuid.uuid4()))])
            ),
        ),
    ]
    for call in refused:
        with pytest.raises(ResourceExistsError) as e:
            call()
        assert code_of(e) == "ScopeLocked"
        assert "cannot perform write operation" in e.value.error.message
        assert "frozen" in e.value.error.message
    assert kv.vaults.get(rg, name).tags == {"a": "b"}
    # Locks bind the management plane only: the data plane keeps working.
    secrets_of(sb, name).set_secret("still", "writable")

    listed = locks.management_locks.list_at_resource_level(rg, KV, "", "vaults", name)
    assert sorted(l.name for l in listed) == ["frozen", "no-delete"]

    for l in ("frozen", "no-delete"):
        locks.management_locks.delete_at_resource_level(rg, KV, "", "vaults", name, l)
    with pytest.raises(ResourceNotFoundError):
        locks.management_locks.get_at_resource_level(rg, KV, "", "vaults", name, "frozen")
    kv.vaults.delete(rg, name)
    with pytest.raises(ResourceNotFoundError):
        kv.vaults.get(rg, name)


def test_lock_on_a_resource_group_holds_every_vault_in_it(sb, kv, locks, rg):
    names = [vault_name(), vault_name()]
    for n in names:
        create(kv, sb, rg, n)
    lock = locks.management_locks.create_or_update_at_resource_group_level(
        rg, "keep-group", ManagementLockObject(level="CanNotDelete")
    )
    assert lock.id.endswith(f"/resourceGroups/{rg}/providers/Microsoft.Authorization/locks/keep-group")
    for n in names:
        with pytest.raises(ResourceExistsError) as e:
            kv.vaults.delete(rg, n)
        assert code_of(e) == "ScopeLocked"
        assert f"/resourceGroups/{rg}'" in e.value.error.message
    # A vault-level lock shows in the group's list; atScope() shows what applies to the group.
    resource_lock(locks, rg, names[0], "pin", "CanNotDelete")
    assert sorted(l.name for l in locks.management_locks.list_at_resource_group_level(rg)) == [
        "keep-group", "pin",
    ]
    assert [l.name for l in locks.management_locks.list_at_resource_group_level(rg, filter="atScope()")] == [
        "keep-group"
    ]
    assert sorted(
        l.name
        for l in locks.management_locks.list_at_resource_level(
            rg, KV, "", "vaults", names[0], filter="atScope()"
        )
    ) == ["keep-group", "pin"]

    # ReadOnly on the group: no updates of its vaults, and no new vaults in it.
    locks.management_locks.create_or_update_at_resource_group_level(
        rg, "keep-group", ManagementLockObject(level="ReadOnly")
    )
    with pytest.raises(ResourceExistsError) as e:
        kv.vaults.update(rg, names[1], VaultPatchParameters(tags={"x": "y"}))
    assert code_of(e) == "ScopeLocked"
    with pytest.raises(ResourceExistsError):
        create(kv, sb, rg, vault_name())

    locks.management_locks.delete_at_resource_group_level(rg, "keep-group")
    kv.vaults.delete(rg, names[1])
    with pytest.raises(ResourceExistsError):
        kv.vaults.delete(rg, names[0])  # its own lock still holds
    locks.management_locks.delete_at_resource_level(rg, KV, "", "vaults", names[0], "pin")
    kv.vaults.delete(rg, names[0])
    assert list(locks.management_locks.list_at_resource_group_level(rg)) == []


def test_invalid_lock_levels_and_names_are_refused(sb, kv, locks, rg):
    name = vault_name()
    create(kv, sb, rg, name)
    with pytest.raises(HttpResponseError) as e:
        resource_lock(locks, rg, name, "x", "NotSpecified")
    assert e.value.status_code == 400
    with pytest.raises(HttpResponseError) as e:
        locks.management_locks.create_or_update_at_resource_group_level(
            rg, "a:b", ManagementLockObject(level="ReadOnly")
        )
    assert e.value.status_code == 400
    with pytest.raises(ResourceNotFoundError):
        resource_lock(locks, rg, vault_name(), "x", "ReadOnly")  # no such vault


@pytest.fixture
def no_subscription_locks_left(sb, locks):
    """Subscription locks hold every vault of the session's server: remove them whatever happens."""
    yield
    for l in locks.management_locks.list_at_subscription_level(filter="atScope()"):
        locks.management_locks.delete_at_subscription_level(l.name)


def test_lock_on_the_subscription_holds_every_group_and_vault_in_it(
    sb, kv, locks, admin_oid, no_subscription_locks_left
):
    sub = sb.creds["subscription_id"]
    rgs = [unique("rg"), unique("rg")]
    names = [vault_name(), vault_name()]
    for rg, n in zip(rgs, names):
        create(kv, sb, rg, n, [policy(sb, admin_oid)])
    lock_name = unique("keep-sub")
    lock = locks.management_locks.create_or_update_at_subscription_level(lock_name, {"level": "CanNotDelete"})
    assert lock.id == f"/subscriptions/{sub}/providers/Microsoft.Authorization/locks/{lock_name}"
    assert (lock.name, lock.type, lock.level) == (lock_name, "Microsoft.Authorization/locks", "CanNotDelete")
    assert locks.management_locks.get_at_subscription_level(lock_name).as_dict() == lock.as_dict()

    # Inherited by every resource group and every vault in it, whichever group.
    for rg, n in zip(rgs, names):
        with pytest.raises(ResourceExistsError) as e:
            kv.vaults.delete(rg, n)
        assert code_of(e) == "ScopeLocked"
        assert f"following scope(s) are locked: '/subscriptions/{sub}'" in e.value.error.message
        assert lock_name in e.value.error.message
    kv.vaults.update(rgs[0], names[0], VaultPatchParameters(tags={"still": "writable"}))

    # The subscription's list holds every lock in it; atScope() only those that apply to it.
    group_lock = unique("grp")
    locks.management_locks.create_or_update_at_resource_group_level(
        rgs[1], group_lock, ManagementLockObject(level="ReadOnly")
    )
    listed = {l.name for l in locks.management_locks.list_at_subscription_level()}
    assert {lock_name, group_lock} <= listed
    at_scope = {l.name for l in locks.management_locks.list_at_subscription_level(filter="atScope()")}
    assert lock_name in at_scope and group_lock not in at_scope
    read_only = {l.name for l in locks.management_locks.list_at_subscription_level(filter="level eq 'ReadOnly'")}
    assert group_lock in read_only and lock_name not in read_only
    can_not_delete = {
        l.name for l in locks.management_locks.list_at_subscription_level(filter="level eq 'CanNotDelete'")
    }
    assert lock_name in can_not_delete and group_lock not in can_not_delete
    with pytest.raises(HttpResponseError) as e:
        list(locks.management_locks.list_at_subscription_level(filter="level eq 'Frozen'"))
    assert (e.value.status_code, code_of(e)) == (400, "BadRequest")
    with pytest.raises(HttpResponseError) as e:
        list(locks.management_locks.list_at_subscription_level(filter="name eq 'x'"))
    assert (e.value.status_code, code_of(e)) == (400, "BadRequest")
    locks.management_locks.delete_at_resource_group_level(rgs[1], group_lock)

    # ReadOnly on the subscription: no vault changes and no new vaults, in any group.
    locks.management_locks.create_or_update_at_subscription_level(lock_name, {"level": "ReadOnly"})
    with pytest.raises(ResourceExistsError) as e:
        kv.vaults.update(rgs[1], names[1], VaultPatchParameters(tags={"x": "y"}))
    assert code_of(e) == "ScopeLocked" and "cannot perform write operation" in e.value.error.message
    with pytest.raises(ResourceExistsError) as e:
        create(kv, sb, unique("rg"), vault_name())
    assert code_of(e) == "ScopeLocked"
    # The data plane is not bound by locks.
    secrets_of(sb, names[0]).set_secret("during-lock", "ok")

    locks.management_locks.delete_at_subscription_level(lock_name)
    with pytest.raises(ResourceNotFoundError):
        locks.management_locks.get_at_subscription_level(lock_name)
    for rg, n in zip(rgs, names):
        kv.vaults.delete(rg, n)


def test_scope_form_lock_calls_reach_the_same_locks(sb, kv, locks, rg, no_subscription_locks_left):
    sub = sb.creds["subscription_id"]
    name = vault_name()
    create(kv, sb, rg, name)
    sub_scope = f"/subscriptions/{sub}"
    rg_scope = f"{sub_scope}/resourceGroups/{rg}"
    vault_scope = f"{rg_scope}/providers/Microsoft.KeyVault/vaults/{name}"
    ops = locks.management_locks

    group = ops.create_or_update_by_scope(rg_scope, "by-scope", ManagementLockObject(level="CanNotDelete"))
    assert group.id == f"{rg_scope}/providers/Microsoft.Authorization/locks/by-scope"
    assert ops.get_at_resource_group_level(rg, "by-scope").as_dict() == group.as_dict()
    assert ops.get_by_scope(rg_scope, "by-scope").as_dict() == group.as_dict()
    # Without the leading slash, as some callers write scopes.
    assert ops.get_by_scope(rg_scope.lstrip("/"), "by-scope").id == group.id

    pin = ops.create_or_update_by_scope(vault_scope, "pin", {"level": "ReadOnly", "notes": "by scope"})
    assert pin.id == f"{vault_scope}/providers/Microsoft.Authorization/locks/pin"
    assert ops.get_at_resource_level(rg, KV, "", "vaults", name, "pin").notes == "by scope"
    with pytest.raises(ResourceExistsError) as e:
        kv.vaults.update(rg, name, VaultPatchParameters(tags={"a": "b"}))
    assert code_of(e) == "ScopeLocked"

    assert sorted(l.name for l in ops.list_by_scope(rg_scope)) == ["by-scope", "pin"]
    assert sorted(l.name for l in ops.list_by_scope(vault_scope, filter="atScope()")) == ["by-scope", "pin"]
    assert [l.name for l in ops.list_by_scope(rg_scope, filter="atScope()")] == ["by-scope"]
    assert [l.name for l in ops.list_by_scope(rg_scope, filter="level eq 'ReadOnly'")] == ["pin"]

    # The subscription through the scope form is the subscription-level lock.
    whole = ops.create_or_update_by_scope(sub_scope, unique("sub"), ManagementLockObject(level="CanNotDelete"))
    assert whole.id == f"{sub_scope}/providers/Microsoft.Authorization/locks/{whole.name}"
    assert ops.get_at_subscription_level(whole.name).as_dict() == whole.as_dict()
    assert whole.name in {l.name for l in ops.list_by_scope(sub_scope, filter="atScope()")}
    ops.delete_by_scope(sub_scope, whole.name)
    with pytest.raises(ResourceNotFoundError):
        ops.get_at_subscription_level(whole.name)

    # Scopes that name nothing a lock can sit on.
    with pytest.raises(HttpResponseError) as e:
        ops.get_by_scope("/providers/Microsoft.Management/managementGroups/mg1", "x")
    assert (e.value.status_code, code_of(e)) == (400, "BadRequest")
    with pytest.raises(ResourceNotFoundError) as e:
        list(ops.list_by_scope(f"{rg_scope}/providers/Microsoft.Storage/storageAccounts/acct"))
    assert code_of(e) == "ResourceNotFound"
    with pytest.raises(ResourceNotFoundError):
        ops.create_or_update_by_scope(
            f"{rg_scope}/providers/Microsoft.KeyVault/vaults/{vault_name()}", "x", {"level": "ReadOnly"}
        )
    with pytest.raises(HttpResponseError) as e:
        list(ops.list_by_scope(rg_scope, filter="level eq ReadOnly"))
    assert (e.value.status_code, code_of(e)) == (400, "BadRequest")

    for scope, lock in ((vault_scope, "pin"), (rg_scope, "by-scope")):
        ops.delete_by_scope(scope, lock)
    with pytest.raises(ResourceNotFoundError):
        ops.get_by_scope(rg_scope, "by-scope")
    assert list(ops.list_by_scope(rg_scope)) == []
    kv.vaults.delete(rg, name)


# --- who may do what ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def contributor(sb) -> Principal:
    who = sb.create_principal()
    sb.cli(
        "role", "assign", "--scope", f"/subscriptions/{sb.creds['subscription_id']}",
        "--role", "Contributor", "--assignee", who.object_id,
    )
    return who


def test_contributor_manages_vaults_but_not_locks(sb, locks, rg, contributor):
    kv = kv_client(sb, contributor)
    their_locks = lock_client(sb, contributor)
    name = vault_name()
    create(kv, sb, rg, name)
    kv.vaults.update(rg, name, VaultPatchParameters(tags={"owner": "contributor"}))
    assert kv.vaults.get(rg, name).tags == {"owner": "contributor"}

    with pytest.raises(HttpResponseError) as e:
        resource_lock(their_locks, rg, name, "mine", "CanNotDelete")
    assert (e.value.status_code, code_of(e)) == (403, "AuthorizationFailed")
    assert "Microsoft.Authorization/locks/write" in e.value.error.message

    for call in (
        lambda: their_locks.management_locks.create_or_update_at_subscription_level("mine", {"level": "ReadOnly"}),
        lambda: their_locks.management_locks.create_or_update_by_scope(
            f"/subscriptions/{sb.creds['subscription_id']}/resourceGroups/{rg}", "mine", {"level": "ReadOnly"}
        ),
    ):
        with pytest.raises(HttpResponseError) as e:
            call()
        assert (e.value.status_code, code_of(e)) == (403, "AuthorizationFailed")

    resource_lock(locks, rg, name, "owners-lock", "CanNotDelete")
    # Reading locks is allowed (in every form); removing them is not.
    assert [l.name for l in their_locks.management_locks.list_by_scope(f"/subscriptions/{sb.creds['subscription_id']}/resourceGroups/{rg}")] == [
        "owners-lock"
    ]
    assert [l.name for l in their_locks.management_locks.list_at_resource_level(rg, KV, "", "vaults", name)] == [
        "owners-lock"
    ]
    with pytest.raises(HttpResponseError) as e:
        their_locks.management_locks.delete_at_resource_level(rg, KV, "", "vaults", name, "owners-lock")
    assert e.value.status_code == 403
    with pytest.raises(ResourceExistsError):
        kv.vaults.delete(rg, name)

    locks.management_locks.delete_at_resource_level(rg, KV, "", "vaults", name, "owners-lock")
    kv.vaults.delete(rg, name)
    kv.vaults.begin_purge_deleted(name, LOCATION).result()
    assert name not in [d.name for d in kv.vaults.list_deleted()]


def test_a_principal_without_a_role_gets_nothing(sb, rg):
    nobody = sb.create_principal()
    kv = kv_client(sb, nobody)
    with pytest.raises(HttpResponseError) as e:
        list(kv.vaults.list_by_resource_group(rg))
    assert (e.value.status_code, code_of(e)) == (403, "AuthorizationFailed")
    with pytest.raises(HttpResponseError) as e:
        create(kv, sb, rg, vault_name())
    assert e.value.status_code == 403
