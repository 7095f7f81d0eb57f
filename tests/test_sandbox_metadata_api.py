"""The Dataverse metadata API of the sandbox (EntityDefinitions, RelationshipDefinitions, GlobalOptionSetDefinitions)
and FetchXML, over HTTPS with a real token (docs/sandbox.md, "Table definitions" and "FetchXML")."""

from __future__ import annotations

import uuid
from urllib.parse import unquote

import pytest
from test_sandbox_dataverse import DV, error_of

from d365kit.sandbox import fetchxml

CRM = "Microsoft.Dynamics.CRM."
ACCOUNT = "EntityDefinitions(LogicalName='account')"


@pytest.fixture(scope="module")
def dv(sandbox):
    client = DV(sandbox)
    yield client
    client.http.close()


def ok(r):
    assert r.status_code == 200, r.text
    return r.json()


# -- EntityDefinitions ------------------------------------------------------------------------------


def test_entity_definition_properties_clients_read(dv):
    body = ok(
        dv.get(
            ACCOUNT,
            {
                "$select": "SchemaName,PrimaryIdAttribute,PrimaryNameAttribute,PrimaryImageAttribute,ObjectTypeCode,"
                "IsActivity,LogicalCollectionName,EntitySetName,DisplayName,OwnershipType"
            },
        )
    )
    assert body["SchemaName"] == "Account" and body["ObjectTypeCode"] == 1
    assert body["PrimaryIdAttribute"] == "accountid" and body["PrimaryNameAttribute"] == "name"
    assert body["PrimaryImageAttribute"] == "entityimage" and body["IsActivity"] is False
    assert body["LogicalCollectionName"] == body["EntitySetName"] == "accounts"
    assert body["OwnershipType"] == "UserOwned" and uuid.UUID(body["MetadataId"])
    label = body["DisplayName"]
    assert (
        label["LocalizedLabels"][0]["Label"] == "Account"
        and label["LocalizedLabels"][0]["LanguageCode"] == 1033
    )
    assert label["UserLocalizedLabel"]["Label"] == "Account"
    by_id = ok(dv.get(f"EntityDefinitions({body['MetadataId']})", {"$select": "LogicalName"}))
    assert by_id["LogicalName"] == "account"


def test_entity_definitions_filter_with_enums_complex_paths_and_functions(dv):
    def names(flt):
        return {
            d["LogicalName"]
            for d in ok(dv.get("EntityDefinitions", {"$select": "LogicalName", "$filter": flt}))["value"]
        }

    assert names(f"OwnershipType eq {CRM}OwnershipTypes'UserOwned'") >= {"account", "contact", "invoice"}
    assert "transactioncurrency" not in names(f"OwnershipType eq {CRM}OwnershipTypes'UserOwned'")
    assert "account" in names("CanCreateAttributes/Value eq true")
    assert names("startswith(LogicalName,'bcbi_')") == {"bcbi_company"}
    assert names("IsPrivate eq false and (LogicalName eq 'contact' or LogicalName eq 'uom')") == {
        "contact",
        "uom",
    }
    assert names("not (ObjectTypeCode lt 1000)") >= {"product", "transactioncurrency"}
    for flt, word in [
        ("tolower(LogicalName) eq 'a'", "tolower"),
        ("DisplayName/UserLocalizedLabel/Label eq 'Account'", "more than one level"),
        ("Attributes/any(a:a/LogicalName eq 'name')", "any"),
    ]:
        r = dv.get("EntityDefinitions", {"$filter": flt})
        assert r.status_code == 501 and word in error_of(r)["message"], r.text
    r = dv.get("EntityDefinitions", {"$filter": "NoSuchProperty eq 1"})
    assert r.status_code == 400 and "NoSuchProperty" in error_of(r)["message"]


@pytest.mark.parametrize("option", ["$top", "$orderby", "$count", "$skip", "$apply"])
def test_unsupported_query_options_answer_501_naming_them(dv, option):
    r = dv.get("EntityDefinitions", {option: "1"})
    assert r.status_code == 501 and option in error_of(r)["message"]


def test_expand_attributes_with_nested_options(dv):
    body = ok(
        dv.get(
            ACCOUNT,
            {
                "$select": "LogicalName",
                "$expand": f"Attributes($select=LogicalName;$filter=AttributeType eq {CRM}AttributeTypeCode'Picklist')",
            },
        )
    )
    names = {a["LogicalName"] for a in body["Attributes"]}
    assert "paymenttermscode" in names and "name" not in names
    r = dv.get(ACCOUNT, {"$expand": "Attributes($top=2)"})
    assert r.status_code == 501 and "$top" in error_of(r)["message"]


def test_attributes_single_and_typed_casts(dv):
    name = ok(dv.get(f"{ACCOUNT}/Attributes(LogicalName='name')"))
    assert name["@odata.type"] == f"#{CRM}StringAttributeMetadata"
    assert name["MaxLength"] == 160 and name["SchemaName"] == "Name" and name["IsPrimaryName"] is True
    assert name["RequiredLevel"]["Value"] in ("None", "SystemRequired", "ApplicationRequired")
    by_id = ok(dv.get(f"{ACCOUNT}/Attributes({name['MetadataId']})", {"$select": "LogicalName"}))
    assert by_id["LogicalName"] == "name"
    assert dv.get(f"{ACCOUNT}/Attributes(LogicalName='nosuch')").status_code == 404

    picklists = ok(
        dv.get(
            f"{ACCOUNT}/Attributes/{CRM}PicklistAttributeMetadata",
            {"$select": "LogicalName", "$expand": "OptionSet($select=Options)"},
        )
    )["value"]
    terms = next(a for a in picklists if a["LogicalName"] == "paymenttermscode")
    option = terms["OptionSet"]["Options"][0]
    assert option["Value"] == 1 and option["Label"]["LocalizedLabels"][0]["Label"] == "Net 30"
    assert all(a["@odata.type"] == f"#{CRM}PicklistAttributeMetadata" for a in picklists)

    typed = {
        "MoneyAttributeMetadata": ("creditlimit", "Precision"),
        "DateTimeAttributeMetadata": ("createdon", "DateTimeBehavior"),
        "LookupAttributeMetadata": ("transactioncurrencyid", "Targets"),
        "BooleanAttributeMetadata": ("creditonhold", "DefaultValue"),
        "StateAttributeMetadata": ("statecode", "DefaultFormValue"),
        "StatusAttributeMetadata": ("statuscode", "DefaultFormValue"),
        "BigIntAttributeMetadata": ("versionnumber", "MaxValue"),
        "DoubleAttributeMetadata": ("address1_latitude", "Precision"),
    }
    for cast, (column, prop) in typed.items():
        rows = ok(dv.get(f"{ACCOUNT}/Attributes/{CRM}{cast}", {"$select": f"LogicalName,{prop}"}))["value"]
        assert column in {a["LogicalName"] for a in rows}, cast
        assert all(prop in a for a in rows), cast
    status = ok(
        dv.get(
            f"{ACCOUNT}/Attributes(LogicalName='statuscode')/{CRM}StatusAttributeMetadata",
            {"$expand": "OptionSet"},
        )
    )
    assert {o["Value"]: o["State"] for o in status["OptionSet"]["Options"]} == {1: 0, 2: 1}
    boolean = ok(
        dv.get(f"{ACCOUNT}/Attributes(LogicalName='creditonhold')/{CRM}BooleanAttributeMetadata/OptionSet")
    )
    assert boolean["TrueOption"]["Value"] == 1 and boolean["FalseOption"]["Value"] == 0


def test_casts_and_navigations_the_service_refuses(dv):
    r = dv.get(f"{ACCOUNT}/Attributes", {"$select": "LogicalName,MaxLength"})
    assert r.status_code == 400 and "MaxLength" in error_of(r)["message"]
    r = dv.get(f"{ACCOUNT}/Attributes", {"$expand": "OptionSet"})
    assert r.status_code == 400 and "OptionSet" in error_of(r)["message"]
    r = dv.get(f"{ACCOUNT}/Attributes/{CRM}EnumAttributeMetadata")
    assert r.status_code == 400 and "EnumAttributeMetadata" in error_of(r)["message"]
    r = dv.get(f"{ACCOUNT}/Attributes(LogicalName='name')/{CRM}PicklistAttributeMetadata")
    assert r.status_code == 404
    assert dv.send("POST", f"{ACCOUNT}/Attributes", {"SchemaName": "new_X"}).status_code == 501


def test_keys_and_relationship_collections(dv):
    assert ok(dv.get(f"{ACCOUNT}/Keys"))["value"] == []
    many_to_one = ok(dv.get("EntityDefinitions(LogicalName='contact')/ManyToOneRelationships"))["value"]
    parent = [r for r in many_to_one if r["ReferencingAttribute"] == "parentcustomerid"]
    assert {r["ReferencedEntity"] for r in parent} == {"account", "contact"}
    assert all(r["@odata.type"] == f"#{CRM}OneToManyRelationshipMetadata" for r in many_to_one)
    one_to_many = ok(
        dv.get(
            "EntityDefinitions(LogicalName='invoice')/OneToManyRelationships",
            {"$select": "SchemaName,ReferencedEntityNavigationPropertyName"},
        )
    )["value"]
    assert "invoice_details" in {r["ReferencedEntityNavigationPropertyName"] for r in one_to_many}
    assert ok(dv.get(f"{ACCOUNT}/ManyToManyRelationships"))["value"] == []
    schema_name = parent[0]["SchemaName"]
    one = ok(dv.get(f"RelationshipDefinitions(SchemaName='{schema_name}')"))
    assert one["SchemaName"] == schema_name
    typed = ok(
        dv.get(
            f"RelationshipDefinitions/{CRM}OneToManyRelationshipMetadata",
            {"$select": "SchemaName", "$filter": "ReferencedEntity eq 'account'"},
        )
    )["value"]
    assert schema_name in {r["SchemaName"] for r in typed} or parent[1]["SchemaName"] in {
        r["SchemaName"] for r in typed
    }
    r = dv.get("RelationshipDefinitions", {"$filter": "ReferencedEntity eq 'account'"})
    assert r.status_code == 400  # not a property of RelationshipMetadataBase: cast first (documented)


def test_global_option_sets(dv):
    body = ok(dv.get("GlobalOptionSetDefinitions", {"$select": "Name"}))
    assert isinstance(body["value"], list)
    assert dv.get("GlobalOptionSetDefinitions", {"$filter": "Name eq 'x'"}).status_code == 400
    assert dv.get("GlobalOptionSetDefinitions(Name='nosuch')").status_code == 404


def test_retrieve_metadata_changes(dv):
    import json

    query = {
        "Criteria": {
            "Conditions": [
                {
                    "PropertyName": "LogicalName",
                    "ConditionOperator": "Equals",
                    "Value": {"Type": "System.String", "Value": "account"},
                }
            ]
        },
        "Properties": {"PropertyNames": ["LogicalName", "Attributes"]},
        "AttributeQuery": {"Properties": {"PropertyNames": ["LogicalName", "MaxLength"]}},
    }
    body = ok(dv.get("RetrieveMetadataChanges(Query=@p1)", {"@p1": json.dumps(query)}))
    [entity] = body["EntityMetadata"]
    name = next(a for a in entity["Attributes"] if a["LogicalName"] == "name")
    assert name["MaxLength"] == 160


# -- FetchXML --------------------------------------------------------------------------------------


def fetch(dv, xml, annotations=True):
    headers = {}
    if annotations:
        headers["Prefer"] = f'odata.include-annotations="{fetchxml.PAGING_COOKIE},{fetchxml.MORE_RECORDS}"'
    return dv.get("accounts", {"fetchXml": xml}, **headers)


@pytest.fixture(scope="module")
def tagged(dv):
    tag = uuid.uuid4().hex[:8]
    ids = [
        dv.create(
            "accounts",
            {
                "name": f"fx {tag} {i}",
                "creditlimit": i * 100,
                "telephone1": None if i == 0 else f"555-{i}",
                "creditonhold": i % 2 == 1,
            },
        )
        for i in range(6)
    ]
    return tag, ids


def names_of(body):
    return [r["name"] for r in body["value"]]


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ('<condition attribute="creditlimit" operator="eq" value="200" />', [2]),
        ('<condition attribute="creditlimit" operator="ne" value="200" />', [0, 1, 3, 4, 5]),
        ('<condition attribute="creditlimit" operator="gt" value="300" />', [4, 5]),
        ('<condition attribute="creditlimit" operator="ge" value="300" />', [3, 4, 5]),
        ('<condition attribute="creditlimit" operator="lt" value="100" />', [0]),
        ('<condition attribute="creditlimit" operator="le" value="100" />', [0, 1]),
        ('<condition attribute="telephone1" operator="null" />', [0]),
        ('<condition attribute="telephone1" operator="not-null" />', [1, 2, 3, 4, 5]),
        ('<condition attribute="telephone1" operator="like" value="%-3" />', [3]),
        ('<condition attribute="telephone1" operator="not-like" value="%-3" />', [1, 2, 4, 5]),
        ('<condition attribute="telephone1" operator="begins-with" value="555-4" />', [4]),
        ('<condition attribute="telephone1" operator="ends-with" value="-5" />', [5]),
        (
            '<condition attribute="creditlimit" operator="in"><value>100</value><value>500</value></condition>',
            [1, 5],
        ),
        (
            '<condition attribute="creditlimit" operator="not-in"><value>100</value><value>500</value></condition>',
            [0, 2, 3, 4],
        ),
        (
            '<condition attribute="creditlimit" operator="between"><value>100</value><value>300</value></condition>',
            [1, 2, 3],
        ),
        (
            '<condition attribute="creditlimit" operator="not-between"><value>100</value><value>300</value></condition>',
            [0, 4, 5],
        ),
        ('<condition attribute="creditonhold" operator="eq" value="1" />', [1, 3, 5]),
        (
            '<filter type="or"><condition attribute="creditlimit" operator="eq" value="0" />'
            '<filter><condition attribute="creditlimit" operator="gt" value="300" />'
            '<condition attribute="creditonhold" operator="eq" value="false" /></filter></filter>',
            [0, 4],
        ),
    ],
)
def test_fetchxml_operators(dv, tagged, condition, expected):
    tag, _ = tagged
    xml = (
        f'<fetch><entity name="account"><attribute name="name" /><order attribute="creditlimit" />'
        f'<filter><condition attribute="name" operator="begins-with" value="fx {tag}" />{condition}</filter>'
        "</entity></fetch>"
    )
    assert names_of(ok(fetch(dv, xml))) == [f"fx {tag} {i}" for i in expected]


def test_fetchxml_rows_columns_and_paging_cookie(dv, tagged):
    tag, ids = tagged
    base = f'<entity name="account"><attribute name="name" /><filter><condition attribute="name" operator="begins-with" value="fx {tag}" /></filter></entity>'
    body = ok(fetch(dv, f'<fetch count="4">{base}</fetch>'))
    assert len(body["value"]) == 4 and body[f"@{fetchxml.MORE_RECORDS}"] is True
    row = body["value"][0]
    assert set(row) == {"@odata.etag", "name", "accountid"}
    cookie = body[f"@{fetchxml.PAGING_COOKIE}"]
    assert cookie.startswith('<cookie pagenumber="2" pagingcookie="') and cookie.endswith(
        'istracking="False" />'
    )
    inner = unquote(unquote(cookie.split('pagingcookie="', 1)[1].split('"', 1)[0]))
    assert inner.startswith('<cookie page="1"><accountid last="{') and row["accountid"].upper() in inner
    from xml.sax.saxutils import quoteattr

    page2 = ok(fetch(dv, f'<fetch count="4" page="2" paging-cookie={quoteattr(inner)}>{base}</fetch>'))
    assert len(page2["value"]) == 2 and page2[f"@{fetchxml.MORE_RECORDS}"] is False
    assert {r["accountid"] for r in body["value"] + page2["value"]} == set(ids)
    by_page = ok(fetch(dv, f'<fetch count="4" page="2">{base}</fetch>'))
    assert {r["accountid"] for r in by_page["value"]} == {r["accountid"] for r in page2["value"]}
    all_xml = (
        f'<fetch top="1"><entity name="account"><all-attributes /><filter>'
        f'<condition attribute="name" operator="begins-with" value="fx {tag}" /></filter></entity></fetch>'
    )
    all_columns = ok(fetch(dv, all_xml))
    assert {"name", "creditlimit", "statecode"} <= set(all_columns["value"][0])
    assert (
        "telephone1"
        not in ok(
            fetch(
                dv,
                f'<fetch><entity name="account"><attribute name="telephone1" /><filter><condition attribute="accountid" operator="eq" value="{ids[0]}" /></filter></entity></fetch>',
            )
        )["value"][0]
    )
    plain = ok(fetch(dv, f'<fetch count="4">{base}</fetch>', annotations=False))
    assert fetchxml.MORE_RECORDS not in str(plain.keys())
    total = ok(fetch(dv, f'<fetch returntotalrecordcount="true">{base}</fetch>'))
    assert total[f"@{CRM}totalrecordcount"] == 6


@pytest.mark.parametrize(
    ("xml", "status", "word"),
    [
        (
            '<fetch aggregate="true"><entity name="account"><attribute name="name" aggregate="count" alias="n" /></entity></fetch>',
            501,
            "aggregate",
        ),
        (
            '<fetch><entity name="account"><link-entity name="contact" from="contactid" to="primarycontactid" /></entity></fetch>',
            501,
            "link-entity",
        ),
        (
            '<fetch><entity name="account"><filter><condition attribute="createdon" operator="last-x-days" value="3" /></filter></entity></fetch>',
            501,
            "last-x-days",
        ),
        (
            '<fetch distinct="true"><entity name="account"><attribute name="name" /></entity></fetch>',
            501,
            "distinct",
        ),
        ('<fetch><entity name="account"><attribute name="nosuch" /></entity></fetch>', 400, "nosuch"),
        ('<fetch><entity name="contact"><attribute name="fullname" /></entity></fetch>', 400, "contact"),
        ("<fetch><entity name='account'>", 400, "XML"),
        ('<fetch top="5" count="5"><entity name="account" /></fetch>', 400, "top"),
    ],
)
def test_fetchxml_refusals(dv, xml, status, word):
    r = fetch(dv, xml)
    assert r.status_code == status and word in error_of(r)["message"], r.text


def test_fetchxml_with_maxpagesize_or_other_options_is_refused(dv):
    xml = '<fetch><entity name="account"><attribute name="name" /></entity></fetch>'
    assert dv.get("accounts", {"fetchXml": xml}, Prefer="odata.maxpagesize=10").status_code == 400
    assert dv.get("accounts", {"fetchXml": xml, "$select": "name"}).status_code == 400


def test_declared_alternate_keys_are_listed_and_addressing_by_them_is_501(dv, monkeypatch):
    import dataclasses

    from d365kit.sandbox import entity_metadata
    from d365kit.sandbox.schema import DATAVERSE

    keyed = dataclasses.replace(
        DATAVERSE["accounts"], alternate_keys=(("bcbi_accountnumberkey", ("accountnumber",)),)
    )
    [key] = entity_metadata._keys(keyed)
    assert key.props["KeyAttributes"] == ["accountnumber"] and key.props["EntityLogicalName"] == "account"
    monkeypatch.setitem(DATAVERSE, "accounts", keyed)
    r = dv.get("accounts(accountnumber='A-1')")
    assert r.status_code == 501 and "bcbi_accountnumberkey" in error_of(r)["message"]
    monkeypatch.undo()
    assert dv.get("accounts(accountnumber='A-1')").status_code == 400
