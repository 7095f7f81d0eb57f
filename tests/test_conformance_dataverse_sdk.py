"""Conformance: Microsoft's Dataverse SDK for Python against the sandbox, unmodified.

``PowerPlatform-Dataverse-Client`` (the ``conformance`` extra) authenticates through ``azure-identity``
with the sandbox as the Entra authority; the only configuration is what a real tenant needs too:

- the org URL (``base_url``), a credential (``ClientSecretCredential`` or ``CertificateCredential``) with
  ``authority="https://127.0.0.1:<port>"`` (the host; azure-identity appends the tenant) and
  ``disable_instance_discovery=True`` (no login.microsoftonline.com metadata for a private authority),
- the sandbox CA: azure-identity takes ``connection_verify=<ca.pem>`` (an azure-core transport option);
  the SDK has no TLS option and sends through ``requests``, which trusts ``REQUESTS_CA_BUNDLE``.

A failure here is a sandbox bug: the sandbox is fixed, the client never patched. The private sandbox gets
5,100 extra accounts through the store (bulk, in a second) for the paging tests.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.conformance

from azure.identity import CertificateCredential, ClientSecretCredential  # noqa: E402
from PowerPlatform.Dataverse.client import DataverseClient  # noqa: E402
from PowerPlatform.Dataverse.core.errors import HttpError  # noqa: E402
from PowerPlatform.Dataverse.models.upsert import UpsertItem  # noqa: E402

from d365kit.sandbox.schema import DATAVERSE  # noqa: E402
from d365kit.sandbox.server import Sandbox  # noqa: E402

PAGED = 5100  # past one 5,000-row page


@pytest.fixture(scope="module")
def sbx(tmp_path_factory):
    with Sandbox(data_dir=tmp_path_factory.mktemp("conformance")) as s:
        es = DATAVERSE["accounts"]
        rows = [
            {"accountid": str(uuid.uuid4()), "name": f"conformance page {i:05d}", "accountnumber": "PAGED"}
            for i in range(PAGED)
        ]
        s.ctx.store.bulk_insert(es, rows)
        yield s


@pytest.fixture(scope="module")
def info(sbx):
    return sbx.info()


@pytest.fixture(scope="module")
def ca_env(info):
    mp = pytest.MonkeyPatch()
    mp.setenv("REQUESTS_CA_BUNDLE", info["ca_bundle"])
    yield
    mp.undo()


def _authority(info) -> str:
    return "https://" + info["authority"].split("//", 1)[1].split("/", 1)[0]


@pytest.fixture(scope="module")
def secret_credential(info):
    cred = ClientSecretCredential(
        info["tenant_id"],
        info["client_id"],
        info["client_secret"],
        authority=_authority(info),
        disable_instance_discovery=True,
        connection_verify=info["ca_bundle"],
    )
    yield cred
    cred.close()


@pytest.fixture(scope="module")
def client(info, secret_credential, ca_env):
    with DataverseClient(info["dataverse_url"], secret_credential) as c:
        yield c


def test_both_credentials_get_tokens_from_the_sandbox_authority(info, secret_credential):
    pem = Path(info["client_certificate"]).read_bytes() + Path(info["client_certificate_key"]).read_bytes()
    cert = CertificateCredential(
        info["tenant_id"],
        info["client_id"],
        certificate_data=pem,
        authority=_authority(info),
        disable_instance_discovery=True,
        connection_verify=info["ca_bundle"],
    )
    try:
        for cred in (secret_credential, cert):
            token = cred.get_token(info["dataverse_scope"])
            assert token.token.count(".") == 2 and token.expires_on > 0
    finally:
        cert.close()


def test_certificate_credential_drives_the_client(info, ca_env):
    pem = Path(info["client_certificate"]).read_bytes() + Path(info["client_certificate_key"]).read_bytes()
    cert = CertificateCredential(
        info["tenant_id"],
        info["client_id"],
        certificate_data=pem,
        authority=_authority(info),
        disable_instance_discovery=True,
        connection_verify=info["ca_bundle"],
    )
    try:
        with DataverseClient(info["dataverse_url"], cert) as c:
            rid = c.records.create("account", {"name": "via certificate"})
            assert c.records.retrieve("account", rid, select=["name"])["name"] == "via certificate"
    finally:
        cert.close()


def test_create_get_update_delete(client, sbx):
    rid = client.records.create("account", {"name": "Conformance Ltd", "telephone1": "555-0100"})
    assert uuid.UUID(rid)
    got = client.records.retrieve("account", rid, select=["name", "telephone1"])
    assert got["name"] == "Conformance Ltd" and got["telephone1"] == "555-0100"
    client.records.update("account", rid, {"telephone1": "555-0199"})
    assert sbx.ctx.store.get(DATAVERSE["accounts"], rid)["telephone1"] == "555-0199"
    client.records.delete("account", rid)
    assert client.records.retrieve("account", rid) is None  # the SDK's answer to a 404


def test_choice_labels_become_values_through_the_picklist_metadata(client, sbx):
    """The SDK reads PicklistAttributeMetadata + OptionSet to turn a label into its value before writing."""
    rid = client.records.create("account", {"name": "Labelled", "paymenttermscode": "Net 45"})
    assert sbx.ctx.store.get(DATAVERSE["accounts"], rid)["paymenttermscode"] == 3


def test_create_multiple_and_update_multiple(client, sbx):
    ids = client.records.create("account", [{"name": f"bulk {i}"} for i in range(3)])
    assert len(ids) == 3
    client.records.update("account", ids, {"telephone1": "555-0300"})
    store = sbx.ctx.store
    assert [store.get(DATAVERSE["accounts"], i)["telephone1"] for i in ids] == ["555-0300"] * 3
    client.records.update("account", ids, [{"name": f"renamed {i}"} for i in range(3)])
    assert [store.get(DATAVERSE["accounts"], i)["name"] for i in ids] == [f"renamed {i}" for i in range(3)]


def test_upsert_single_and_multiple(client, sbx):
    store, es = sbx.ctx.store, DATAVERSE["accounts"]
    key = uuid.uuid4()
    client.records.upsert("account", [UpsertItem(alternate_key={"accountid": key}, record={"name": "up 1"})])
    assert store.get(es, str(key))["name"] == "up 1"
    client.records.upsert("account", [UpsertItem(alternate_key={"accountid": key}, record={"name": "up 2"})])
    assert store.get(es, str(key))["name"] == "up 2"
    keys = [uuid.uuid4() for _ in range(2)]
    client.records.upsert(
        "account",
        [
            {"alternate_key": {"accountid": k}, "record": {"name": f"many {i}"}}
            for i, k in enumerate([key, *keys])
        ],
    )
    assert [store.get(es, str(k))["name"] for k in [key, *keys]] == ["many 0", "many 1", "many 2"]


def test_list_pages_past_5000_rows(client):
    pages = list(client.records.list_pages("account", filter="accountnumber eq 'PAGED'", select=["name"]))
    assert [len(p) for p in pages] == [5000, PAGED - 5000]
    names = {r["name"] for p in pages for r in p}
    assert len(names) == PAGED
    small = client.records.list("account", filter="accountnumber eq 'PAGED'", select=["name"], page_size=2000)
    assert len(small) == PAGED


def test_fetchxml_pages_past_5000_rows_with_the_paging_cookie(client):
    xml = (
        '<fetch><entity name="account"><attribute name="name" />'
        '<filter><condition attribute="accountnumber" operator="eq" value="PAGED" /></filter>'
        "</entity></fetch>"
    )
    pages = list(client.query.fetchxml(xml).execute_pages())
    assert [len(p) for p in pages] == [5000, PAGED - 5000]
    rows = client.query.fetchxml(xml.replace("<fetch>", '<fetch count="2000">')).execute()
    assert len({r["name"] for r in rows}) == PAGED


def test_fetchxml_filters(client):
    tag = uuid.uuid4().hex[:8]
    for i in range(4):
        client.records.create("account", {"name": f"fx {tag} {i}", "creditlimit": i * 10})
    xml = f"""<fetch>
      <entity name="account">
        <attribute name="name" /><attribute name="creditlimit" />
        <order attribute="creditlimit" descending="true" />
        <filter type="and">
          <condition attribute="name" operator="begins-with" value="fx {tag}" />
          <filter type="or">
            <condition attribute="creditlimit" operator="ge" value="20" />
            <condition attribute="creditlimit" operator="eq" value="0" />
          </filter>
        </filter>
      </entity>
    </fetch>"""
    rows = client.query.fetchxml(xml).execute()
    assert [r["creditlimit"] for r in rows] == [30, 20, 0]


def test_query_builder(client):
    from PowerPlatform.Dataverse.models.filters import col

    rows = list(
        client.query.builder("account")
        .select("name")
        .where(col("accountnumber") == "PAGED")
        .where(col("name") == "conformance page 00007")
        .execute()
    )
    assert [r["name"] for r in rows] == ["conformance page 00007"]


def test_batch_with_a_changeset(client, sbx):
    rid = client.records.create("account", {"name": "batch target"})
    batch = client.batch.new()
    batch.records.retrieve("account", rid, select=["name"])
    with batch.changeset() as cs:
        ref = cs.records.create("contact", {"firstname": "Batch", "lastname": "Person"})
        cs.records.update("account", rid, {"primarycontactid@odata.bind": ref})
    result = batch.execute()
    assert [r.status_code for r in result.responses] == [200, 204, 204], [
        r.error_message for r in result.responses
    ]
    assert sbx.ctx.store.get(DATAVERSE["accounts"], rid)["_primarycontactid_value"]


def test_table_metadata(client):
    info = client.tables.get("account")
    assert info["table_schema_name"] == "Account"
    assert info["entity_set_name"] == "accounts" and info["primary_id_attribute"] == "accountid"
    assert client.tables.get("nosuchtable") is None
    tables = client.tables.list(filter="SchemaName eq 'Account'", select=["LogicalName", "ObjectTypeCode"])
    assert [(t["LogicalName"], t["ObjectTypeCode"]) for t in tables] == [("account", 1)]
    assert {t["LogicalName"] for t in client.tables.list()} >= {"account", "contact", "invoice"}


def test_column_metadata(client):
    strings = client.tables.list_columns(
        "account", select=["LogicalName", "AttributeType"], filter="AttributeType eq 'String'"
    )
    assert {c["LogicalName"] for c in strings} >= {"name", "telephone1"}
    assert {c["AttributeType"] for c in strings} == {"String"}
    with pytest.raises(HttpError) as err:  # a typed property needs the cast, as on the real service
        client.tables.list_columns("account", select=["LogicalName", "MaxLength"])
    assert err.value.status_code == 400 and "MaxLength" in str(err.value)
    name = client.tables.get_column("account", "name")
    assert name["AttributeType"] == "String" and name["MaxLength"] == 160
    assert client.tables.get_column("account", "nosuchcolumn") is None
    typed = client.tables.get_column("account", "name", typed=True)
    assert typed["MaxLength"] == 160 and typed["SchemaName"] == "Name"
    typed_all = client.tables.list_columns("account", typed=True)
    assert {c["LogicalName"] for c in typed_all} >= {"name", "paymenttermscode"}


def test_keys_and_relationships(client):
    assert client.tables.get_alternate_keys("account") == []
    rels = client.tables.list_table_relationships("contact")
    schema_names = {r["SchemaName"] for r in rels}
    assert any(r.get("ReferencingEntity") == "contact" for r in rels)
    one = next(iter(schema_names))
    got = client.tables.get_relationship(one)
    assert got is not None and got.relationship_schema_name == one
    one_to_many = client.tables.list_relationships(
        filter="RelationshipType eq Microsoft.Dynamics.CRM.RelationshipType'OneToManyRelationship'",
        select=["SchemaName"],
    )
    assert len(one_to_many) >= len(rels)


def test_what_the_sandbox_does_not_emulate_answers_501_naming_it(client):
    ids = client.records.create("account", [{"name": "not bulk deleted"}])
    with pytest.raises(HttpError) as err:
        client.records.delete("account", ids)
    assert err.value.status_code == 501 and "BulkDelete" in str(err.value)
    client.records.delete("account", ids, use_bulk_delete=False)
    with pytest.raises(HttpError) as err:
        client.query.sql("SELECT name FROM account")
    assert err.value.status_code == 501 and "sql" in str(err.value)
    with pytest.raises(HttpError) as err:
        client.tables.create("new_Widget", {"new_Size": "int"})
    assert err.value.status_code == 501
