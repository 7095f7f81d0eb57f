"""Server-side OData query options: parsing, validation, dialect rules and SQL compilation.

Pure unit tests against the real schema, plus compiled filters executed against a real Store so that the
SQL (and its bound parameters) is proven, not just its text.
"""

from __future__ import annotations

import pytest

from d365kit.sandbox import schema
from d365kit.sandbox.odata import (
    BoolOp,
    Call,
    Compare,
    InList,
    Literal,
    Not,
    PropRef,
    QueryError,
    compile_filter,
    parse_filter,
    parse_query,
)
from d365kit.sandbox.store import Store

CUSTOMERS = schema.entity_set("bc", "customers")
INVOICES = schema.entity_set("bc", "salesInvoices")
ACCOUNTS = schema.entity_set("dataverse", "accounts")
CONTACTS = schema.entity_set("dataverse", "contacts")
COMPANY = "c0000000-0000-0000-0000-000000000001"
GUID = "5d115c9c-44e3-ea11-bb43-000d3a2feca1"


def err(fn, *args, **kwargs) -> QueryError:
    with pytest.raises(QueryError) as info:
        fn(*args, **kwargs)
    return info.value


# -- parsing -------------------------------------------------------------------------------------------


def test_and_binds_tighter_than_or():
    node = parse_filter("a eq 1 or b eq 2 and c eq 3", "dataverse")
    assert node == BoolOp(
        "or",
        Compare("eq", PropRef("a", 0), Literal("int", 1, 5)),
        BoolOp(
            "and",
            Compare("eq", PropRef("b", 10), Literal("int", 2, 15)),
            Compare("eq", PropRef("c", 21), Literal("int", 3, 26)),
        ),
    )


def test_parentheses_and_not():
    node = parse_filter("not (a eq 1 or a eq 2) and contains(name,'x')", "bc")
    assert isinstance(node, BoolOp) and node.op == "and"
    assert isinstance(node.left, Not) and isinstance(node.left.operand, BoolOp)
    assert node.right == Call("contains", (PropRef("name", 36), Literal("string", "x", 41)))


def test_not_binds_tighter_than_comparison_like_odatalib():
    node = parse_filter("not taxLiable eq true", "bc")
    assert node == Compare("eq", Not(PropRef("taxLiable", 4)), Literal("bool", True, 17))
    e = err(compile_filter, parse_filter("not displayName eq 'x'", "bc"), CUSTOMERS, "bc")
    assert e.status == 400 and "operator kind 'Not'" in e.message


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("'O''Bryan'", "string", "O'Bryan"),
        ("''", "string", ""),
        ("42", "int", 42),
        ("-7", "int", -7),
        ("true", "bool", True),
        ("null", "null", None),
        ("5D115C9C-44E3-EA11-BB43-000D3A2FECA1", "guid", GUID),
        ("2022-11-05", "date", "2022-11-05"),
        ("2019-08-18T20:05:51.603Z", "datetime", "2019-08-18T20:05:51.603Z"),
        ("2019-08-18T20:05:51.6034567Z", "datetime", "2019-08-18T20:05:51.603Z"),
        ("2019-08-18T22:05:51+02:00", "datetime", "2019-08-18T20:05:51.000Z"),
        ("2019-08-18T20:05Z", "datetime", "2019-08-18T20:05:00.000Z"),
    ],
)
def test_literals(text, kind, value):
    node = parse_filter(f"x eq {text}", "dataverse")
    assert isinstance(node, Compare) and isinstance(node.right, Literal)
    assert (node.right.kind, node.right.value) == (kind, value)


def test_decimal_literal_and_lookup_property():
    node = parse_filter("_primarycontactid_value eq null and revenue gt 12.50", "dataverse")
    assert node.left.left == PropRef("_primarycontactid_value", 0)
    assert str(node.right.right.value) == "12.50"


def test_unterminated_literal_message_matches_dataverse():
    for dialect in ("dataverse", "bc"):
        e = err(parse_filter, "lastname eq 'O'Bryan'", dialect)
        assert (e.status, e.kind) == (400, "syntax")
        assert e.message == "There is an unterminated literal at position 21 in 'lastname eq 'O'Bryan''."


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "must not be empty"),
        ("name eq", "Expression expected at position 7"),
        ("name = 'x'", "character '=' is not valid at position 5"),
        ("(name eq 'x'", "Expression expected"),
        ("name eq 'x')", "Syntax error at position 11"),
        ("name eq 'x' foo", "Syntax error at position 12"),
    ],
)
def test_syntax_errors(text, message):
    e = err(parse_filter, text, "bc")
    assert (e.status, e.kind) == (400, "syntax") and message in e.message


def test_invalid_dates():
    assert "Unable to convert value to Date" in err(parse_filter, "postingDate eq 2022-13-45", "bc").message
    assert err(parse_filter, "createdon gt 2022-02-30T00:00:00Z", "dataverse").status == 400


@pytest.mark.parametrize(
    ("text", "dialect", "named"),
    [
        ("contacts/any(c: c/name eq 'x')", "bc", "any"),
        ("contact_customer_accounts/all(c: c/fullname eq 'x')", "dataverse", "all"),
        ("primarycontactid/fullname eq 'x'", "dataverse", "primarycontactid/fullname"),
        ("balanceDue add 5 gt 10", "bc", "add"),
        ("revenue mod 2 eq 0", "dataverse", "mod"),
        (
            "Microsoft.Dynamics.CRM.In(PropertyName='name',PropertyValues=['a','b'])",
            "dataverse",
            "Microsoft.Dynamics.CRM.In",
        ),
        ("substring(displayName,1) eq 'x'", "bc", "substring"),
        ("year(createdon) eq 2020", "dataverse", "year"),
        ("name eq @p1", "dataverse", "@p1"),
        ("tolower(name) eq 'x'", "dataverse", "tolower"),
        ("$it/name eq 'x'", "bc", "$it"),
    ],
)
def test_not_implemented_constructs_are_501(text, dialect, named):
    e = err(parse_filter, text, dialect)
    assert (e.status, e.kind) == (501, "not_implemented") and named in e.message


def test_unknown_function():
    e = err(parse_filter, "frobnicate(name) eq 'x'", "bc")
    assert (e.status, e.kind) == (400, "unknown_function") and "'frobnicate'" in e.message


def test_in_operator_is_bc_only():
    assert parse_filter("number in ('10000','20000')", "bc") == InList(
        PropRef("number", 0), (Literal("string", "10000", 11), Literal("string", "20000", 19))
    )
    e = err(parse_filter, "name in ('a','b')", "dataverse")
    assert (e.status, e.kind) == (400, "syntax") and "'in'" in e.message


def test_bc_or_restriction_only_across_distinct_fields():
    parse_filter("number eq '1' or number eq '2' or startswith(number,'3')", "bc")
    parse_filter("(number eq '1' or number eq '2') and displayName eq 'x'", "bc")
    for text in ("number eq '1' or displayName eq 'x'", "(number eq '1' and city eq 'x') or number eq '2'"):
        e = err(parse_filter, text, "bc")
        assert (e.status, e.kind) == (400, "restriction")
        assert e.message == "The 'OR' operator is not supported on distinct fields on an OData filter."
    parse_filter("name eq 'a' or telephone1 eq 'b'", "dataverse")  # no such restriction in Dataverse


# -- compilation ---------------------------------------------------------------------------------------


def test_compile_uses_quoted_names_and_parameters_only():
    sql, params = compile_filter(parse_filter("displayName eq 'x'') OR 1=1 --'", "bc"), CUSTOMERS, "bc")
    assert sql == '("displayName" IS ?)' and params == ["x') OR 1=1 --"]


def test_compile_null_bool_guid_datetime():
    node = parse_filter(
        f"currencyId eq null and taxLiable eq true and id ne {GUID.upper()} and "
        "lastModifiedDateTime ge 2024-01-01 and blocked ne null",
        "bc",
    )
    sql, params = compile_filter(node, CUSTOMERS, "bc")
    assert '("currencyId" IS NULL)' in sql and '("blocked" IS NOT NULL)' in sql
    assert params == [1, GUID, "2024-01-01T00:00:00.000Z"]


def test_dataverse_strings_fold_case_bc_does_not():
    dv_sql, _ = compile_filter(parse_filter("name eq 'x'", "dataverse"), ACCOUNTS, "dataverse")
    bc_sql, _ = compile_filter(parse_filter("displayName eq 'x'", "bc"), CUSTOMERS, "bc")
    assert "COLLATE NOCASE" in dv_sql and "COLLATE" not in bc_sql


@pytest.mark.parametrize(
    ("text", "es", "dialect", "kind", "fragment"),
    [
        (
            "Name eq 'x'",
            ACCOUNTS,
            "dataverse",
            "unknown_property",
            "Could not find a property named 'Name' on type 'Microsoft.Dynamics.CRM.account'.",
        ),
        (
            "x eq 1",
            CUSTOMERS,
            "bc",
            "unknown_property",
            "Could not find a property named 'x' on type 'Microsoft.NAV.customer'.",
        ),
        (
            "balanceDue eq 'ten'",
            CUSTOMERS,
            "bc",
            "syntax",
            "Found operand types 'Edm.Decimal' and 'Edm.String' for operator kind 'Equal'.",
        ),
        ("accountid eq 'abc'", ACCOUNTS, "dataverse", "syntax", "incompatible types"),
        ("taxLiable eq 1", CUSTOMERS, "bc", "syntax", "incompatible types"),
        (
            "postingDate gt 2024-01-01T00:00:00Z",
            INVOICES,
            "bc",
            "syntax",
            "'Edm.Date' and 'Edm.DateTimeOffset'",
        ),
        ("blocked eq 'Nope'", CUSTOMERS, "bc", "syntax", "Allowed values: ' ', 'Ship', 'Invoice', 'All'"),
        ("number in ('1', 2)", CUSTOMERS, "bc", "syntax", "incompatible types"),
        ("contains(balanceDue,'1')", CUSTOMERS, "bc", "unknown_function", "No function signature"),
        ("contains(number)", CUSTOMERS, "bc", "unknown_function", "No function signature"),
        ("displayName", CUSTOMERS, "bc", "syntax", "must evaluate to a single boolean value"),
        ("number eq '1' and balanceDue", CUSTOMERS, "bc", "syntax", "operator kind 'And'"),
    ],
)
def test_compile_errors(text, es, dialect, kind, fragment):
    e = err(compile_filter, parse_filter(text, dialect), es, dialect)
    assert (e.status, e.kind) == (400, kind) and fragment in e.message


# -- query options -------------------------------------------------------------------------------------


def test_parse_query_full_bc():
    q = parse_query(
        [
            ("$select", "id,number, displayName"),
            ("$filter", "number eq '10000'"),
            ("$orderby", "displayName desc,number"),
            ("$top", "5"),
            ("$skip", "10"),
            ("$count", "true"),
            ("$expand", "currency($select=code),paymentTerm"),
            ("$schemaversion", "2.1"),
            ("company", COMPANY),
        ],
        CUSTOMERS,
        "bc",
        extra_params=frozenset({"company"}),
    )
    assert q.select == ["id", "number", "displayName"]
    assert q.orderby == [("displayName", True), ("number", False)]
    assert (q.top, q.skip, q.count, q.schemaversion) == (5, 10, True, "2.1")
    assert q.custom == {"company": COMPANY}
    assert [i.name for i in q.expand] == ["currency", "paymentTerm"]
    assert q.expand[0].options == [("$select", "code")] and q.expand[0].query.select == ["code"]
    assert q.expand[1].query is not None and q.expand[1].query.select is None


def test_parse_query_dataverse_expand_and_tokens():
    q = parse_query(
        [
            ("$select", "name,_primarycontactid_value"),
            ("$expand", "primarycontactid($select=fullname;$filter=contains(fullname,'a'))"),
            ("$skiptoken", '<cookie pagenumber="2" />'),
        ],
        ACCOUNTS,
        "dataverse",
    )
    item = q.expand[0]
    assert (item.name, item.target, item.query.select) == ("primarycontactid", "contacts", ["fullname"])
    assert item.query.filter is not None and q.skiptoken == '<cookie pagenumber="2" />'
    e = err(parse_query, [("$expand", "primarycontactid($select=nosuch)")], ACCOUNTS, "dataverse")
    assert e.message == "Could not find a property named 'nosuch' on type 'Microsoft.Dynamics.CRM.contact'."
    e = err(parse_query, [("$expand", "nosuchnav")], ACCOUNTS, "dataverse")
    assert e.kind == "unknown_property"


@pytest.mark.parametrize(
    ("pairs", "dialect", "status", "kind", "fragment"),
    [
        (
            [("$skip", "10")],
            "dataverse",
            400,
            "unsupported_option",
            "The query parameter '$skip' is not supported.",
        ),
        ([("$search", "x")], "dataverse", 400, "unsupported_option", "'$search'"),
        ([("$format", "json")], "dataverse", 400, "unsupported_option", "'$format'"),
        ([("$apply", "aggregate(revenue with sum as total)")], "dataverse", 501, "not_implemented", "$apply"),
        ([("$compute", "x")], "bc", 501, "not_implemented", "$compute"),
        ([("$search", "x")], "bc", 501, "not_implemented", "$search"),
        ([("$deltatoken", "1")], "bc", 400, "unsupported_option", "$deltatoken"),
        ([("@p1", "'x'")], "dataverse", 501, "not_implemented", "@p1"),
        ([("$Filter", "name eq 'x'")], "dataverse", 400, "unsupported_option", "'$Filter'"),
        ([("$levels", "2")], "bc", 400, "unsupported_option", "'$levels'"),
        ([("foo", "1")], "bc", 400, "unsupported_option", "'foo'"),
        ([("$top", "1"), ("$top", "2")], "bc", 400, "syntax", "specified more than once"),
        ([("$top", "-1")], "dataverse", 400, "syntax", "non-negative integer"),
        ([("$top", "1.5")], "bc", 400, "syntax", "non-negative integer"),
        ([("$count", "yes")], "dataverse", 400, "syntax", "not a valid count option"),
        ([("$select", "name,Name")], "dataverse", 400, "unknown_property", "'Name'"),
        ([("$select", "name,")], "dataverse", 400, "syntax", "empty item"),
        ([("$select", "primarycontactid/fullname")], "dataverse", 501, "not_implemented", "Navigation paths"),
        ([("$orderby", "nosuch desc")], "bc", 400, "unknown_property", "Microsoft.NAV.customer"),
        ([("$orderby", "number sideways")], "bc", 400, "syntax", "'asc' or 'desc'"),
        ([("$orderby", "tolower(number) desc")], "bc", 501, "not_implemented", "Expressions in $orderby"),
        ([("$schemaversion", "3.0")], "bc", 400, "syntax", "schema version"),
        ([("$format", "xml")], "bc", 400, "syntax", "JSON only"),
        ([("$expand", "*")], "bc", 501, "not_implemented", "'*'"),
        ([("$expand", "currency($skiptoken=x)")], "bc", 400, "unsupported_option", "inside $expand"),
        ([("$expand", "currency(company=x)")], "bc", 400, "unsupported_option", "'company'"),
        ([("$filter", "displayName eq 'a' or number eq 'b'")], "bc", 400, "restriction", "'OR' operator"),
    ],
)
def test_parse_query_errors(pairs, dialect, status, kind, fragment):
    es = CUSTOMERS if dialect == "bc" else ACCOUNTS
    e = err(parse_query, pairs, es, dialect, extra_params=frozenset({"company"}))
    assert (e.status, e.kind) == (status, kind) and fragment in e.message and str(e) == e.message


def test_parse_query_accepts_empty_and_defaults():
    q = parse_query([], ACCOUNTS, "dataverse")
    assert (q.select, q.filter, q.orderby, q.top, q.skip, q.expand, q.count) == (
        None,
        None,
        [],
        None,
        None,
        [],
        False,
    )
    assert parse_query([("$count", "false"), ("$top", "0")], ACCOUNTS, "dataverse").top == 0
    assert (
        parse_query([("$deltatoken", "919042!08/22/2017")], ACCOUNTS, "dataverse").deltatoken
        == "919042!08/22/2017"
    )


# -- executed against a real Store ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    st = Store(tmp_path_factory.mktemp("odata") / "odata.db", [CUSTOMERS, ACCOUNTS])
    customers = [
        {
            "id": f"00000000-0000-0000-0000-00000000000{i}",
            "number": n,
            "displayName": d,
            "balanceDue": b,
            "taxLiable": t,
            "blocked": bl,
            "lastModifiedDateTime": m,
        }
        for i, (n, d, b, t, bl, m) in enumerate(
            [
                ("10000", "Adatum Corporation", 100.5, True, " ", "2024-01-01T10:00:00.000Z"),
                ("20000", "Trey Research", 0.0, False, "All", "2024-02-01T10:00:00.000Z"),
                ("30000", "School of Fine Art", 250.0, True, "Ship", "2024-03-01T10:00:00.000Z"),
                ("40000", "O'Bryan Supplies", None, False, " ", None),
            ],
            start=1,
        )
    ]
    st.bulk_insert(CUSTOMERS, customers, company=COMPANY)
    st.bulk_insert(
        ACCOUNTS,
        [
            {
                "accountid": f"a0000000-0000-0000-0000-00000000000{i}",
                "name": name,
                "revenue": rev,
                "_primarycontactid_value": pc,
            }
            for i, (name, rev, pc) in enumerate(
                [
                    ("Fourth Coffee", 10000.0, GUID),
                    ("Litware, Inc.", 5000.0, None),
                    ("100% Organic", None, None),
                ],
                start=1,
            )
        ],
    )
    yield st
    st.close()


def run(store, es, dialect, text, key="number"):
    sql, params = compile_filter(parse_filter(text, dialect), es, dialect)
    company = COMPANY if es.company_scoped else None
    return [r[key] for r in store.query(es, where=sql, params=params, company=company)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("number eq '10000'", ["10000"]),
        ("displayName eq 'O''Bryan Supplies'", ["40000"]),
        ("displayName eq 'adatum corporation'", []),  # BC is case-sensitive
        ("tolower(displayName) eq 'adatum corporation'", ["10000"]),
        ("contains(displayName,'Research')", ["20000"]),
        ("contains(displayName,'research')", []),
        ("contains(toupper(displayName),'RESEARCH')", ["20000"]),
        ("startswith(displayName,'School')", ["30000"]),
        ("endswith(displayName,'Art')", ["30000"]),
        ("endswith(displayName,'A very long suffix that is longer than the name')", []),
        ("balanceDue gt 100 and taxLiable eq true", ["10000", "30000"]),
        ("balanceDue eq null", ["40000"]),
        ("balanceDue ne 0", ["10000", "30000", "40000"]),
        ("not (taxLiable eq true)", ["20000", "40000"]),
        ("blocked eq ' '", ["10000", "40000"]),
        ("blocked in ('All','Ship')", ["20000", "30000"]),
        ("number in ('10000','30000') and taxLiable eq true", ["10000", "30000"]),
        ("lastModifiedDateTime gt 2024-01-15T00:00:00Z", ["20000", "30000"]),
        ("lastModifiedDateTime ge 2024-02-01T11:00:00+01:00", ["20000", "30000"]),
        ("lastModifiedDateTime lt 2024-02-01", ["10000"]),
        ("id eq 00000000-0000-0000-0000-000000000002", ["20000"]),
        ("(number eq '10000' or number eq '20000') and balanceDue gt 50", ["10000"]),
    ],
)
def test_bc_filters_execute(store, text, expected):
    assert run(store, CUSTOMERS, "bc", text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name eq 'FOURTH COFFEE'", ["Fourth Coffee"]),  # Dataverse is case-insensitive
        ("contains(name,'COFFEE') or contains(name,'litware')", ["Fourth Coffee", "Litware, Inc."]),
        ("startswith(name,'lit')", ["Litware, Inc."]),
        ("endswith(name,'INC.')", ["Litware, Inc."]),
        ("name gt 'g'", ["Litware, Inc."]),
        (f"_primarycontactid_value eq {GUID.upper()}", ["Fourth Coffee"]),
        ("_primarycontactid_value eq null and revenue eq null", ["100% Organic"]),
        ("revenue ge 5000 and revenue lt 10000.5", ["Fourth Coffee", "Litware, Inc."]),
        ("name ne 'fourth coffee'", ["Litware, Inc.", "100% Organic"]),
    ],
)
def test_dataverse_filters_execute(store, text, expected):
    assert sorted(run(store, ACCOUNTS, "dataverse", text, key="name")) == sorted(expected)


@pytest.mark.parametrize(
    "text",
    [
        "displayName eq 'x'') OR 1=1 --'",
        "displayName eq ''' OR ''1''=''1'",
        "contains(displayName,'%'' ; DROP TABLE \"bc__customers\"; --')",
        "number in ('1'') OR (''1''=''1', '2')",
    ],
)
def test_injection_shaped_literals_stay_data(store, text):
    assert run(store, CUSTOMERS, "bc", text) == []
    assert store.count(CUSTOMERS, company=COMPANY) == 4


def test_injection_shaped_literal_dataverse(store):
    assert (
        run(
            store,
            ACCOUNTS,
            "dataverse",
            "name eq 'x'' OR 1=1; DROP TABLE \"dataverse__accounts\" --'",
            "name",
        )
        == []
    )
    assert store.count(ACCOUNTS) == 3
