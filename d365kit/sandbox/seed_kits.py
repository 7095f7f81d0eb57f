"""Per-mapping row builders of the seed: a BC row (``make``) and its Dataverse image (``image``) that agree
under the default field mappings, plus the mapping's distractors, out-of-scope bends and error texts.

Kits run in ``seed_catalog.MAPPINGS`` order; each publishes its healthy records into ``Seeder.pools`` for
the kits after it (customers -> contacts -> opportunities, items -> sales prices -> invoices ...).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from d365kit.sandbox import seed_names as N
from d365kit.sandbox.context import CLIENT_ID, DEMO_USER_OID, DEMO_USER_UPN
from d365kit.sandbox.seed import BLANK_GUID, DAY, NOW, START, Rec, Seeder, altered, day, gid, ts
from d365kit.sandbox.seed_catalog import BIDI, BY_NAME, Mapping

APPLICATION_USER_ID = "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f"  # = dataverse_api.APPLICATION_USER_ID


def date_time(date: str | None) -> str | None:
    """A BC date as a Dataverse UserLocal date-time column stores it (midnight UTC; the store's format).

    ``invoice.datedelivered`` and ``invoicedetail.actualdeliveryon`` are DateTime columns with UserLocal
    behaviour (tables/dataverse.toml): the integration writes the date as a date-time.
    """
    return f"{date}T00:00:00.000Z" if date else None


def nz(value: str) -> str | None:
    """A BC blank text as Dataverse stores it (null)."""
    return value or None


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())[:24] or "example"


def foundation(s: Seeder) -> None:
    """Company, bcbi companies, payment terms, shipment methods and the non-salesperson systemusers."""
    created = START - 400 * DAY
    s.emit(
        "bc",
        "companies",
        {
            "id": s.company_id,
            "systemVersion": "25.0.23364.24627",
            "timestamp": 1_000,
            "name": N.COMPANY_NAME,
            "displayName": N.COMPANY_NAME,
            "businessProfileId": "",
            "systemCreatedAt": ts(created),
            "systemCreatedBy": BLANK_GUID,
            "systemModifiedAt": ts(created),
            "systemModifiedBy": BLANK_GUID,
        },
    )
    for key, name, external in (
        (s.own_company, N.COMPANY_NAME, s.company_id),
        (s.other_company, N.OTHER_COMPANY_NAME, gid("company", N.OTHER_COMPANY_NAME)),
    ):
        row = {
            "bcbi_companyid": key,
            "bcbi_name": name,
            "bcbi_externalid": external,
            "statecode": 0,
            "statuscode": 1,
        }
        Seeder.lookup(row, "ownerid", "systemuser", s.integration_user)
        s.stamp_dv(row, created, s.integration_user, created)
        s.emit("dataverse", "bcbi_companies", row)
    s.pools["payment_terms"] = {}
    for code, option, name, due in N.PAYMENT_TERMS:
        pid = gid("paymentTerm", code)
        s.pools["payment_terms"][code] = (pid, option)
        s.emit(
            "bc",
            "paymentTerms",
            {
                "id": pid,
                "code": code,
                "displayName": name,
                "dueDateCalculation": due,
                "discountDateCalculation": "10D" if code.startswith("2%") else "",
                "discountPercent": 2.0 if code.startswith("2%") else 0.0,
                "lastModifiedDateTime": ts(created),
            },
        )
    s.pools["shipment_methods"] = {}
    for code, option, name in N.SHIPMENT_METHODS:
        sid = gid("shipmentMethod", code)
        s.pools["shipment_methods"][code] = (sid, option)
        s.emit(
            "bc",
            "shipmentMethods",
            {"id": sid, "code": code, "displayName": name, "lastModifiedDateTime": ts(created)},
        )
    # Outside the SALESPEOPLE filter (integration, disabled or unlicensed): never coupled, in no category.
    for uid, first, last, email, extra in (
        (
            s.integration_user,
            "#",
            "Business Central",
            "bcintegration@cronus.example",
            {"isintegrationuser": True, "applicationid": gid("app", "bc")},
        ),
        (s.system_user, "", "SYSTEM", "system@cronus.example", {"isdisabled": True, "islicensed": False}),
        (
            APPLICATION_USER_ID,
            "d365kit",
            "Sandbox App",
            "d365kit-app@cronus.example",
            {"islicensed": False, "applicationid": CLIENT_ID},
        ),
        (
            gid("systemuser", "analyst"),
            "Ana",
            "Lyst",
            DEMO_USER_UPN,
            {"islicensed": False, "azureactivedirectoryobjectid": DEMO_USER_OID},
        ),
        (gid("systemuser", "former"), "Annette", "Hill", "annette.hill@cronus.example", {"isdisabled": True}),
        (gid("systemuser", "contractor"), "Dan", "Park", "dan.park@cronus.example", {"islicensed": False}),
    ):
        row = {
            "systemuserid": uid,
            "firstname": nz(first),
            "lastname": last,
            "fullname": " ".join(p for p in (first, last) if p),
            "internalemailaddress": email,
            "domainname": email,
            "isdisabled": False,
            "islicensed": True,
            "isintegrationuser": False,
            **extra,
        }
        s.stamp_dv(row, created, s.system_user, created)
        s.emit("dataverse", "systemusers", row)


class Kit:
    """Base kit: healthy generation, emitting and the hooks the planter uses."""

    bc_modified: str | None = "lastModifiedDateTime"
    drift: tuple[tuple[str, str], ...] = ()
    unique_dv = False  # Dataverse enforces a unique natural key: plant duplicates by Dataverse id only
    has_company = True  # the Dataverse table has bcbi_companyid
    failing: tuple[str, str] | None = None

    def __init__(self, s: Seeder, m: Mapping):
        self.s, self.m, self.rng = s, m, s.rng
        self.index = 0
        self.es_dv = s.store.entity("dataverse", m.dv_set)
        self.es_bc = s.store.entity(m.bc_service, m.bc_set)
        self._directions = {(f.bc, f.dv): f.direction for f in m.fields if f.bc}

    # -- what a kit defines --------------------------------------------------------------------------

    def size(self) -> int:
        raise NotImplementedError

    def make(self, i: int) -> dict[str, Any]:
        raise NotImplementedError

    def image(self, bc: dict[str, Any], dv_id: str) -> dict[str, Any]:
        raise NotImplementedError

    def children(self, dv: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        return []

    def distractors(self) -> None:
        """Uncoupled rows outside the mapping's filters."""

    def publish(self) -> None:
        """Put what later kits need into ``Seeder.pools``."""

    def out_of_scope(self) -> list[tuple[str, Callable[[Rec], None]]]:
        return []

    def error(self, rec: Rec, fld: tuple[str, str]) -> str:
        return f"The {self.m.table_name} {self.key_text(rec.bc)} cannot be synchronized: field {fld[0]} is not valid."

    # -- shared machinery ----------------------------------------------------------------------------

    def key_text(self, bc: dict[str, Any] | None) -> str:
        bc = bc or {}
        return str(bc.get("number") or bc.get("code") or bc.get("id"))

    def bc_ref(self, bc: dict[str, Any] | None) -> str:
        return f"{self.m.table_name}: {self.key_text(bc)}"

    def dv_ref(self, dv: dict[str, Any] | None) -> str:
        return f"CRM {self.m.dv_logical.capitalize()}: {{{(dv or {}).get(self.m.dv_key, '').upper()}}}"

    def direction_of(self, fld: tuple[str, str]) -> str:
        return self._directions.get(fld, self.m.direction)

    def failing_field(self, side: str) -> tuple[str, str] | None:
        return self.failing if side == "bc" else None

    def failing_value(self, bc: dict[str, Any] | None) -> Any:
        """The BC value whose synchronization fails (None: an ordinary changed value)."""
        return None

    def pending_sides(self) -> tuple[str, ...]:
        return self.m.source_sides

    def healthy_source(self) -> str:
        if self.m.direction == BIDI:
            return "bc" if self.rng.random() < 0.7 else "dataverse"
        return self.m.source_sides[0]

    def alter_bc(self, bc: dict[str, Any], prop: str, salt: int) -> Any:
        if prop in ("salespersonCode", "salesperson"):
            codes = [c for c, _ in self.s.pools["salespeople"] if c != bc[prop]]
            return codes[salt % len(codes)]
        p = self.es_bc.prop(prop)
        return altered(bc.get(prop), salt, p.max_length if p else None)

    def fresh(self) -> Rec:
        bc = self.make(self.index)
        self.index += 1
        return Rec(bc, self.image(bc, gid(self.m.name, "dv", bc["id"])))

    def emit(self, rec: Rec, bc: bool = True, dv: bool = True) -> None:
        if bc and rec.bc is not None:
            self.s.emit_bc(self.m, rec.bc)
        if dv and rec.dv is not None:
            self.emit_dv(rec.dv)

    def emit_dv(self, row: dict[str, Any]) -> None:
        self.s.emit("dataverse", self.m.dv_set, row)
        for name, child in self.children(row):
            self.s.emit("dataverse", name, child)

    def dataverse_born(self, dv: dict[str, Any] | None) -> None:
        """A row created by a user in Dataverse: no company stamp (empty company is in scope)."""
        if dv is not None and self.has_company:
            Seeder.lookup(dv, "bcbi_companyid", "bcbi_company", None)

    def build_healthy(self) -> list[Rec]:
        out = []
        for _ in range(self.size()):
            rec = self.fresh()
            self.s.couple(self, rec, self.s.sync_time(self.m), self.healthy_source())
            self.emit(rec)
            out.append(rec)
        return out

    def company(self, row: dict[str, Any], own: bool = True) -> None:
        Seeder.lookup(
            row, "bcbi_companyid", "bcbi_company", self.s.own_company if own else self.s.other_company
        )

    def currency_of(self, code: str) -> str:
        return self.s.pools["currencies"][code][1]

    def owner_of(self, code: str) -> str:
        return self.s.pools["salesperson_user"][code]

    def other_company(self, rec: Rec) -> None:
        self.company(rec.dv, own=False)  # type: ignore[arg-type]

    def deactivate(self, rec: Rec) -> None:
        rec.dv["statecode"], rec.dv["statuscode"] = 1, 2  # type: ignore[index]

    def healthy_list(self, name: str) -> list[Rec]:
        return self.s.healthy[name]


class Salespeople(Kit):
    drift = (("phoneNo", "mobilephone"), ("email", "internalemailaddress"), ("displayName", "fullname"))
    has_company = False

    def __init__(self, s: Seeder, m: Mapping):
        super().__init__(s, m)
        self.codes: dict[str, str] = {}  # BC id -> code

    def size(self) -> int:
        return len(N.SALESPEOPLE) + self.s.n // 2000

    def make(self, i: int) -> dict[str, Any]:
        if i < len(N.SALESPEOPLE):
            code, name, title = N.SALESPEOPLE[i]
        else:
            first, last = N.person_name(i * 7 + 3)
            code, name, title = f"SP NO. {i:05d}", f"{first} {last}", "Sales Representative"
        first, last = name.split(" ", 1)
        self.codes[gid("salesperson", code)] = code
        return {
            "id": gid("salesperson", code),
            "code": code,
            "displayName": name,
            "email": f"{first}.{last}@cronus.example".lower().replace(" ", ""),
            "phoneNo": f"+1 425 555 {1000 + i:04d}",
            "jobTitle": title,
            "commisionPercent": 5.0,
        }

    def image(self, bc: dict[str, Any], dv_id: str) -> dict[str, Any]:
        first, last = bc["displayName"].split(" ", 1)
        return {
            "systemuserid": dv_id,
            "firstname": first,
            "lastname": last,
            "fullname": bc["displayName"],
            "internalemailaddress": bc["email"],
            "domainname": bc["email"],
            "mobilephone": bc["phoneNo"],
            "title": bc["jobTitle"],
            "isdisabled": False,
            "islicensed": True,
            "isintegrationuser": False,
            "azureactivedirectoryobjectid": gid("aad", bc["code"]),
        }

    def out_of_scope(self) -> list[tuple[str, Callable[[Rec], None]]]:
        def disable(rec: Rec) -> None:
            rec.dv["isdisabled"] = True  # type: ignore[index]

        def unlicense(rec: Rec) -> None:
            rec.dv["islicensed"] = False  # type: ignore[index]

        return [("systemuser disabled", disable), ("systemuser not licensed", unlicense)]

    def error(self, rec: Rec, fld: tuple[str, str]) -> str:
        return (
            f"The length of the string is {len(str(rec.dv.get(fld[1]))) + 40}, but it must be less than or equal "  # type: ignore[union-attr]
            f"to 30 characters. Value: {rec.dv.get(fld[1])} (Salesperson/Purchaser {rec.bc['code']})"  # type: ignore[index, union-attr]
        )

    def publish(self) -> None:
        healthy = self.healthy_list(self.m.name)
        self.s.pools["uncoupled_salespeople"] = [
            self.codes[p["bc_id"]]
            for p in self.s.problems
            if p["mapping"] == self.m.name and p["category"] == "uncoupled_bc" and p["match"] is None
        ]
        self.s.pools["salespeople"] = [(r.bc["code"], r.dv["systemuserid"]) for r in healthy]  # type: ignore[index]
        self.s.pools["salesperson_user"] = dict(self.s.pools["salespeople"])
        self.s.people = [u for _, u in self.s.pools["salespeople"]]


class Currencies(Kit):
    drift = (("symbol", "currencysymbol"), ("displayName", "currencyname"))
    unique_dv = True
    has_company = False

    def __init__(self, s: Seeder, m: Mapping):
        super().__init__(s, m)
        self.rates: dict[str, float] = {}

    def size(self) -> int:
        return len(N.CURRENCIES)

    def make(self, i: int) -> dict[str, Any]:
        if i < len(N.CURRENCIES):
            code, name, symbol, rate = N.CURRENCIES[i]
        else:
            code, name, symbol = N.SPARE_CURRENCIES[(i - len(N.CURRENCIES)) % len(N.SPARE_CURRENCIES)]
            lap = (i - len(N.CURRENCIES)) // len(N.SPARE_CURRENCIES)
            code, rate = (code if not lap else f"{code[:2]}{lap}"), 1.0
        self.rates[code] = rate
        return {
            "id": gid("currency", code),
            "code": code,
            "displayName": name,
            "symbol": symbol,
            "amountDecimalPlaces": "2:2",
            "amountRoundingPrecision": 0.01,
        }

    def image(self, bc: dict[str, Any], dv_id: str) -> dict[str, Any]:
        return {
            "transactioncurrencyid": dv_id,
            "currencyname": bc["displayName"],
            "isocurrencycode": bc["code"],
            "currencysymbol": bc["symbol"],
            "currencyprecision": 2,
            "exchangerate": self.rates[bc["code"]],
            "statecode": 0,
            "statuscode": 1,
        }

    def error(self, rec: Rec, fld: tuple[str, str]) -> str:
        return f"The exchange rate for currency {rec.bc['code']} cannot be found. Set up a Currency Exchange Rate."  # type: ignore[index]

    def publish(self) -> None:
        self.s.pools["currencies"] = {
            r.bc["code"]: (r.bc["id"], r.dv["transactioncurrencyid"])
            for r in self.healthy_list(self.m.name)  # type: ignore[index]
        }


class Units(Kit):
    drift = (("code", "baseuomname"),)
    unique_dv = True
    has_company = False

    def size(self) -> int:
        return len(N.UNITS)

    def make(self, i: int) -> dict[str, Any]:
        if i < len(N.UNITS):
            code, name, iso = N.UNITS[i]
        else:
            j = i - len(N.UNITS)
            code, name, iso = N.SPARE_UNITS[j % len(N.SPARE_UNITS)]
            code = code if j < len(N.SPARE_UNITS) else f"{code[:7]}{j // len(N.SPARE_UNITS)}"
        return {
            "id": gid("unitOfMeasure", code),
            "code": code,
            "displayName": name,
            "internationalStandardCode": iso,
            "symbol": "",
        }

    def image(self, bc: dict[str, Any], dv_id: str) -> dict[str, Any]:
        return {
            "uomscheduleid": dv_id,
            "name": f"NAV {bc['code']}",
            "baseuomname": bc["code"],
            "description": bc["displayName"],
            "statecode": 0,
            "statuscode": 1,
        }

    def children(self, dv: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        uom_id = gid("uom", dv["uomscheduleid"])
        row = {"uomid": uom_id, "name": dv["baseuomname"], "quantity": 1.0, "isschedulebaseuom": True}
        Seeder.lookup(row, "baseuom", "uom", uom_id)
        Seeder.lookup(row, "uomscheduleid", "uomschedule", dv["uomscheduleid"])
        for name in ("modifiedon", "createdon", "_modifiedby_value", "_createdby_value"):
            row[name] = dv.get(name)
        return [("uoms", row)]

    def error(self, rec: Rec, fld: tuple[str, str]) -> str:
        return (
            f"The Dataverse unit group NAV {rec.bc['code']} must contain exactly one unit of measure "  # type: ignore[index]
            f"with quantity 1."
        )

    def publish(self) -> None:
        self.s.pools["units"] = {
            r.bc["code"]: (r.bc["id"], r.dv["uomscheduleid"], gid("uom", r.dv["uomscheduleid"]))  # type: ignore[index]
            for r in self.healthy_list(self.m.name)
        }


class Customers(Kit):
    drift = (
        ("phoneNumber", "telephone1"),
        ("city", "address1_city"),
        ("salespersonCode", "ownerid"),
        ("displayName", "name"),
        ("creditLimit", "creditlimit"),
        ("email", "emailaddress1"),
    )
    failing = ("salespersonCode", "ownerid")

    def size(self) -> int:
        return max(10, self.s.n - 4 - 12 * max(1, round(self.s.n * 0.005)))

    def make(self, i: int) -> dict[str, Any]:
        rng = self.rng
        name = N.company_name(i)
        number = f"{(i + 1) * 10000}" if i < len(N.CUSTOMERS) else f"C{i:06d}"
        if rng.random() < 0.15:
            city, state, post, country, currency = rng.choice(N.FOREIGN_CITIES)
        else:
            (city, state, post), country, currency = rng.choice(N.US_CITIES), "US", N.LCY
        web = slug(name)
        terms = rng.choice(("NET30", "NET30", "2%10NET30", "NET45", "NET60"))
        ship = rng.choice(("FOB", "NOCHARGE"))
        cur_id = BLANK_GUID if currency == N.LCY else self.s.pools["currencies"][currency][0]
        return {
            "id": gid("customer", number),
            "number": number,
            "displayName": name,
            "type": "Company",
            "addressLine1": f"{100 + (i * 37) % 900} {N.STREETS[i % len(N.STREETS)]}",
            "addressLine2": "Suite 200" if i % 3 == 0 else "",
            "city": city,
            "state": state,
            "country": country,
            "postalCode": post,
            "phoneNumber": f"+1 {200 + i % 700} 555 {i % 10000:04d}",
            "email": f"info@{web}.example",
            "website": f"www.{web}.example",
            "salespersonCode": rng.choice(self.s.pools["salespeople"])[0],
            "creditLimit": float(rng.choice((0, 5000, 10000, 25000, 50000))),
            "taxLiable": country == "US",
            "currencyId": cur_id,
            "currencyCode": currency,
            "paymentTermsId": self.s.pools["payment_terms"][terms][0],
            "shipmentMethodId": self.s.pools["shipment_methods"][ship][0],
            "blocked": " ",
        }

    def image(self, bc: dict[str, Any], dv_id: str) -> dict[str, Any]:
        terms = {pid: opt for pid, opt in self.s.pools["payment_terms"].values()}
        ships = {sid: opt for sid, opt in self.s.pools["shipment_methods"].values()}
        row = {
            "accountid": dv_id,
            "name": bc["displayName"],
            "telephone1": nz(bc["phoneNumber"]),
            "emailaddress1": nz(bc["email"]),
            "websiteurl": nz(bc["website"]),
            "address1_line1": nz(bc["addressLine1"]),
            "address1_line2": nz(bc["addressLine2"]),
            "address1_city": nz(bc["city"]),
            "address1_stateorprovince": nz(bc["state"]),
            "address1_postalcode": nz(bc["postalCode"]),
            "address1_country": nz(bc["country"]),
            "creditlimit": bc["creditLimit"],
            "paymenttermscode": terms[bc["paymentTermsId"]],
            "address1_freighttermscode": ships[bc["shipmentMethodId"]],
            "customertypecode": 3,
            "statecode": 0,
            "statuscode": 1,
        }
        Seeder.lookup(
            row, "transactioncurrencyid", "transactioncurrency", self.currency_of(bc["currencyCode"])
        )
        Seeder.lookup(row, "ownerid", "systemuser", self.owner_of(bc["salespersonCode"]))
        self.company(row)
        return row

    def distractors(self) -> None:
        """Prospect and CRONUS Canada accounts, blocked BC customers: uncoupled and out of scope."""
        for j in range(max(3, self.s.n // 20)):
            rec = self.fresh()
            rec.dv["customertypecode"] = 8  # type: ignore[index]
            self.dataverse_born(rec.dv)
            if j % 4 == 0:
                self.company(rec.dv, own=False)  # type: ignore[arg-type]
                rec.dv["customertypecode"] = 3  # type: ignore[index]
            self.s.stamp_dv(rec.dv, self.s.sync_time(self.m), self.s.person())  # type: ignore[arg-type]
            self.emit(rec, bc=False)
        for _ in range(max(1, self.s.n // 100)):
            rec = self.fresh()
            rec.bc["blocked"] = "All"  # type: ignore[index]
            rec.bc["lastModifiedDateTime"] = ts(self.s.sync_time(self.m))  # type: ignore[index]
            self.emit(rec, dv=False)

    def out_of_scope(self) -> list[tuple[str, Callable[[Rec], None]]]:
        def block(rec: Rec) -> None:
            rec.bc["blocked"] = "All"  # type: ignore[index]

        return [
            ("account belongs to CRONUS Canada", self.other_company),
            ("account inactive", self.deactivate),
            ("customer blocked", block),
        ]

    def failing_value(self, bc: dict[str, Any]) -> Any:
        """A salesperson that is not coupled: the classic CUSTOMER failure."""
        uncoupled = self.s.pools.get("uncoupled_salespeople")
        return uncoupled[0] if uncoupled else None

    def error(self, rec: Rec, fld: tuple[str, str]) -> str:
        if fld[0] == "salespersonCode":
            return f"The Salesperson/Purchaser with Code {rec.bc['salespersonCode']} is not coupled."  # type: ignore[index]
        return (
            "Cannot update the Customer record because the mapping CUSTOMER is bi-directional, and one or "
            "both values have changed since the last synchronization."
        )

    def publish(self) -> None:
        self.s.pools["customers"] = self.healthy_list(self.m.name)


class Contacts(Kit):
    drift = (
        ("phoneNumber", "telephone1"),
        ("email", "emailaddress1"),
        ("city", "address1_city"),
        ("mobilePhoneNumber", "mobilephone"),
        ("addressLine1", "address1_line1"),
    )

    def __init__(self, s: Seeder, m: Mapping):
        super().__init__(s, m)
        self.next_no = 0
        self.company_contact: dict[str, str] = {}  # customer id -> company contact number

    def number(self) -> str:
        self.next_no += 1
        return f"CT{self.next_no:06d}"

    def size(self) -> int:
        return int(self.s.n * 1.5)

    def build_healthy(self) -> list[Rec]:
        """First the BC company contacts (Type Company: outside the CONTACT table filter, never coupled),
        one per healthy customer; then the coupled persons."""
        for cust in self.s.pools["customers"]:
            c = cust.bc
            number = self.number()
            self.company_contact[c["id"]] = number  # type: ignore[index]
            self.s.emit_bc(
                self.m,
                {
                    "id": gid("contact", number),
                    "number": number,
                    "type": "Company",
                    "displayName": c["displayName"],  # type: ignore[index]
                    "companyNumber": number,
                    "companyName": c["displayName"],
                    "contactBusinessRelation": "Customer",  # type: ignore[index]
                    **{
                        k: c[k]
                        for k in (
                            "addressLine1",
                            "addressLine2",
                            "city",
                            "state",
                            "country",
                            "postalCode",  # type: ignore[index]
                            "phoneNumber",
                            "email",
                            "website",
                        )
                    },
                    "searchName": c["displayName"].upper(),
                    "lastModifiedDateTime": cust.couplings[0]["lastSynchModifiedOn"],  # type: ignore[index]
                },
            )
        return super().build_healthy()

    def make(self, i: int) -> dict[str, Any]:
        cust = self.rng.choice(self.s.pools["customers"])
        c = cust.bc
        first, last = N.person_name(i)
        number = self.number()
        name = f"{first} {last}"
        return {
            "id": gid("contact", number),
            "number": number,
            "type": "Person",
            "displayName": name,
            "jobTitle": self.rng.choice(N.JOB_TITLES),
            "companyNumber": self.company_contact[c["id"]],
            "companyName": c["displayName"],
            "contactBusinessRelation": " ",
            **{k: c[k] for k in ("addressLine1", "addressLine2", "city", "state", "country", "postalCode")},
            "phoneNumber": f"+1 {300 + i % 600} 555 {i % 10000:04d}",
            "mobilePhoneNumber": f"+1 {400 + i % 500} 556 {(i * 7) % 10000:04d}",
            "email": f"{first}.{last}.{i}@{slug(c['displayName'])}.example".lower(),
            "website": "",
            "searchName": name.upper(),
            "_customer": cust,
        }

    def image(self, bc: dict[str, Any], dv_id: str) -> dict[str, Any]:
        cust = bc["_customer"]
        first, last = bc["displayName"].split(" ", 1)
        row = {
            "contactid": dv_id,
            "firstname": first,
            "lastname": last,
            "fullname": bc["displayName"],
            "jobtitle": bc["jobTitle"],
            "telephone1": nz(bc["phoneNumber"]),
            "mobilephone": nz(bc["mobilePhoneNumber"]),
            "emailaddress1": nz(bc["email"]),
            "websiteurl": nz(bc["website"]),
            "address1_line1": nz(bc["addressLine1"]),
            "address1_line2": nz(bc["addressLine2"]),
            "address1_city": nz(bc["city"]),
            "address1_stateorprovince": nz(bc["state"]),
            "address1_postalcode": nz(bc["postalCode"]),
            "address1_country": nz(bc["country"]),
            "statecode": 0,
            "statuscode": 1,
        }
        Seeder.lookup(row, "parentcustomerid", "account", cust.dv["accountid"])
        Seeder.lookup(
            row, "transactioncurrencyid", "transactioncurrency", cust.dv["_transactioncurrencyid_value"]
        )
        Seeder.lookup(row, "ownerid", "systemuser", cust.dv["_ownerid_value"])
        self.company(row)
        return row

    def out_of_scope(self) -> list[tuple[str, Callable[[Rec], None]]]:
        def detach(rec: Rec) -> None:
            rec.bc["companyNumber"], rec.bc["companyName"] = "", ""  # type: ignore[index]

        return [
            ("contact belongs to CRONUS Canada", self.other_company),
            ("contact inactive", self.deactivate),
            ("BC contact has no company", detach),
        ]

    def error(self, rec: Rec, fld: tuple[str, str]) -> str:
        return (
            f"Cannot update the Contact record because the mapping CONTACT is bi-directional, and one or both "
            f"values have changed since the last synchronization. Contact: {rec.bc['number']}"
        )  # type: ignore[index]

    def publish(self) -> None:
        self.s.pools["contacts"] = self.healthy_list(self.m.name)
        self.s.pools["company_contact"] = self.company_contact


class Items(Kit):
    drift = (
        ("displayName", "name"),
        ("unitPrice", "price"),
        ("unitCost", "standardcost"),
        ("inventory", "quantityonhand"),
    )

    def size(self) -> int:
        return max(16, self.s.n // 100)

    def make(self, i: int) -> dict[str, Any]:
        rng = self.rng
        if i < len(N.ITEMS):
            number, name, price, cost, unit = N.ITEMS[i]
        else:
            number, name = f"{3000 + i}-S", N.item_description(i)
            cost = round(rng.uniform(20, 900), 1)
            price, unit = round(cost * 1.28, 1), rng.choice(("PCS", "PCS", "BOX", "SET"))
        return {
            "id": gid("item", number),
            "number": number,
            "displayName": name,
            "type": "Inventory",
            "itemCategoryCode": "FURNITURE",
            "blocked": False,
            "gtin": f"{7_000_000_000_000 + i}",
            "inventory": float(rng.randint(0, 400)),
            "unitPrice": price,
            "unitCost": cost,
            "taxGroupCode": "FURNITURE",
            "baseUnitOfMeasureId": self.s.pools["units"][unit][0],
            "baseUnitOfMeasureCode": unit,
            "generalProductPostingGroupCode": "RETAIL",
            "inventoryPostingGroupCode": "RESALE",
        }

    def image(self, bc: dict[str, Any], dv_id: str) -> dict[str, Any]:
        return self.product(
            dv_id,
            bc["number"],
            bc["displayName"],
            bc["unitPrice"],
            bc["unitCost"],
            bc["inventory"],
            bc["baseUnitOfMeasureCode"],
            1,
        )

    def product(
        self, dv_id: str, number: str, name: str, price: float, cost: float, qty: float, unit: str, kind: int
    ) -> dict[str, Any]:
        _, schedule, uom = self.s.pools["units"][unit]
        row = {
            "productid": dv_id,
            "name": name,
            "productnumber": number,
            "price": price,
            "standardcost": cost,
            "currentcost": cost,
            "quantityonhand": qty,
            "quantitydecimal": 2,
            "producttypecode": kind,
            "productstructure": 1,
            "isstockitem": kind == 1,
            "statecode": 0,
            "statuscode": 1,
        }
        Seeder.lookup(row, "defaultuomscheduleid", "uomschedule", schedule)
        Seeder.lookup(row, "defaultuomid", "uom", uom)
        Seeder.lookup(row, "transactioncurrencyid", "transactioncurrency", self.currency_of(N.LCY))
        self.company(row)
        return row

    def out_of_scope(self) -> list[tuple[str, Callable[[Rec], None]]]:
        def retire(rec: Rec) -> None:
            rec.dv["statecode"], rec.dv["statuscode"] = 1, 2  # type: ignore[index]

        def block(rec: Rec) -> None:
            rec.bc["blocked"] = True  # type: ignore[index]

        return [
            ("product belongs to CRONUS Canada", self.other_company),
            ("product retired", retire),
            (f"{self.m.table_name.lower()} blocked", block),
        ]

    def distractors(self) -> None:
        """Retired products nobody couples."""
        rec = self.fresh()
        rec.dv["statecode"], rec.dv["statuscode"] = 1, 2  # type: ignore[index]
        self.s.stamp_dv(rec.dv, self.s.sync_time(self.m), self.s.person())  # type: ignore[arg-type]
        self.emit(rec, bc=False)

    def error(self, rec: Rec, fld: tuple[str, str]) -> str:
        unit = rec.bc.get("baseUnitOfMeasureCode", "HOUR")  # type: ignore[union-attr]
        return f"The Unit of Measure with Code {unit} is not coupled. {self.bc_ref(rec.bc)}"

    def publish(self) -> None:
        self.s.pools["items"] = self.healthy_list(self.m.name)


class Resources(Items):
    drift = (
        ("displayName", "name"),
        ("unitPrice", "price"),
        ("unitCost", "currentcost"),
        ("capacity", "quantityonhand"),
    )

    def size(self) -> int:
        return max(len(N.RESOURCES), self.s.n // 400)

    def make(self, i: int) -> dict[str, Any]:
        if i < len(N.RESOURCES):
            number, name, kind, price, cost = N.RESOURCES[i]
        else:
            first, last = N.person_name(i * 11 + 5)
            number, name, kind = f"RES{i:05d}", f"{first} {last}", "Person"
            cost = float(self.rng.randint(50, 90))
            price = round(cost * 1.45, 1)
        return {
            "id": gid("resource", number),
            "number": number,
            "displayName": name,
            "type": kind,
            "baseUnitOfMeasureCode": "HOUR",
            "unitPrice": price,
            "unitCost": cost,
            "capacity": 160.0,
            "vendorNumber": "",
            "blocked": False,
        }

    def image(self, bc: dict[str, Any], dv_id: str) -> dict[str, Any]:
        row = self.product(
            dv_id,
            bc["number"],
            bc["displayName"],
            bc["unitPrice"],
            bc["unitCost"],
            bc["capacity"],
            bc["baseUnitOfMeasureCode"],
            3,
        )
        row["vendorid"] = nz(bc["vendorNumber"])
        return row

    def publish(self) -> None:
        self.s.pools["resources"] = self.healthy_list(self.m.name)


class PriceGroups(Kit):
    drift = (("code", "name"),)

    def size(self) -> int:
        return max(len(N.PRICE_GROUPS), self.s.n // 2000)

    def make(self, i: int) -> dict[str, Any]:
        code, desc = N.PRICE_GROUPS[i] if i < len(N.PRICE_GROUPS) else (f"PG{i:05d}", f"Price group {i}")
        return {
            "id": gid("customerPriceGroup", code),
            "code": code,
            "description": desc,
            "currencyCode": N.LCY,
        }

    def image(self, bc: dict[str, Any], dv_id: str) -> dict[str, Any]:
        row = {
            "pricelevelid": dv_id,
            "name": bc["code"],
            "description": bc["description"],
            "statecode": 0,
            "statuscode": 100001,
        }
        Seeder.lookup(
            row, "transactioncurrencyid", "transactioncurrency", self.currency_of(bc["currencyCode"])
        )
        self.company(row)
        return row

    def out_of_scope(self) -> list[tuple[str, Callable[[Rec], None]]]:
        return [("price list belongs to CRONUS Canada", self.other_company)]

    def error(self, rec: Rec, fld: tuple[str, str]) -> str:
        return f"The Currency {rec.bc['currencyCode']} is not coupled. Customer Price Group: {rec.bc['code']}"  # type: ignore[index]

    def publish(self) -> None:
        self.s.pools["price_groups"] = self.healthy_list(self.m.name)


class SalesPrices(Kit):
    drift = (("unitPrice", "amount"),)

    def size(self) -> int:
        return max(24, self.s.n // 20)

    def make(self, i: int) -> dict[str, Any]:
        items, groups = self.s.pools["items"], self.s.pools["price_groups"]
        item = items[i % len(items)]
        g = (i // len(items)) % len(groups)
        group = groups[g]
        lap = i // (len(items) * len(groups))
        factor = (0.95, 0.85, 0.9, 0.8, 0.75)[g % 5]
        return {
            "id": gid("salesPrice", i),
            "itemNumber": item.bc["number"],
            "salesType": "Customer_x0020_Price_x0020_Group",  # type: ignore[index]
            "salesCode": group.bc["code"],
            "currencyCode": N.LCY,
            "startingDate": day(START, -365 + lap),  # type: ignore[index]
            "unitOfMeasureCode": item.bc["baseUnitOfMeasureCode"],
            "minimumQuantity": 0.0,  # type: ignore[index]
            "unitPrice": round(item.bc["unitPrice"] * factor, 2),
            "_item": item,
            "_group": group,  # type: ignore[index]
        }

    def image(self, bc: dict[str, Any], dv_id: str) -> dict[str, Any]:
        item, group = bc["_item"], bc["_group"]
        _, schedule, uom = self.s.pools["units"][bc["unitOfMeasureCode"]]
        row = {
            "productpricelevelid": dv_id,
            "amount": bc["unitPrice"],
            "pricingmethodcode": 1,
            "quantitysellingcode": 1,
            "productnumber": bc["itemNumber"],
        }
        Seeder.lookup(row, "pricelevelid", "pricelevel", group.dv["pricelevelid"])
        Seeder.lookup(row, "productid", "product", item.dv["productid"])
        Seeder.lookup(row, "uomid", "uom", uom)
        Seeder.lookup(row, "uomscheduleid", "uomschedule", schedule)
        Seeder.lookup(
            row, "transactioncurrencyid", "transactioncurrency", self.currency_of(bc["currencyCode"])
        )
        self.company(row)
        return row

    def key_text(self, bc: dict[str, Any] | None) -> str:
        bc = bc or {}
        return f"{bc.get('itemNumber')},{bc.get('salesCode')},{bc.get('startingDate')}"

    def out_of_scope(self) -> list[tuple[str, Callable[[Rec], None]]]:
        def all_customers(rec: Rec) -> None:
            rec.bc["salesType"], rec.bc["salesCode"] = "All_x0020_Customers", ""  # type: ignore[index]

        return [("sales price is for all customers, not a customer price group", all_customers)]

    def error(self, rec: Rec, fld: tuple[str, str]) -> str:
        return f"The Item {rec.bc['itemNumber']} is not coupled. Sales Price: {self.key_text(rec.bc)}"  # type: ignore[index]


class Opportunities(Kit):
    drift = (
        ("description", "name"),
        ("estimatedValue", "estimatedvalue"),
        ("estimatedClosingDate", "estimatedclosedate"),
        ("salespersonCode", "ownerid"),
    )

    def __init__(self, s: Seeder, m: Mapping):
        super().__init__(s, m)
        self.by_account = {c.dv["accountid"]: c for c in s.pools["customers"]}  # type: ignore[index]

    def size(self) -> int:
        return max(6, int(self.s.n * 0.3))

    def make(self, i: int) -> dict[str, Any]:
        rng = self.rng
        contact = rng.choice(self.s.pools["contacts"])
        cust = contact.dv["_parentcustomerid_value"]  # type: ignore[index]
        company = self.by_account[cust]
        created = NOW - rng.randint(20, 200) * DAY
        chances = float(rng.choice((25, 50, 75)))
        value = float(rng.randint(5, 200) * 1000)
        return {
            "id": gid("opportunity", i),
            "number": f"OP{i + 1:06d}",
            "contactNumber": contact.bc["number"],  # type: ignore[index]
            "contactName": contact.bc["displayName"],
            "contactCompanyName": company.bc["displayName"],  # type: ignore[index]
            "salespersonCode": company.bc["salespersonCode"],  # type: ignore[index]
            "description": f"{N.OPPORTUNITY_TOPICS[i % len(N.OPPORTUNITY_TOPICS)]} - {company.bc['displayName']}"[
                :100
            ],  # type: ignore[index]
            "status": rng.choice(("In_x0020_Progress", "In_x0020_Progress", "Not_x0020_Started")),
            "closed": False,
            "creationDate": day(created),
            "estimatedClosingDate": day(NOW, rng.randint(10, 120)),
            "estimatedValue": value,
            "chancesOfSuccessPrc": chances,
            "completedPrc": chances,
            "calculatedCurrentValue": round(value * chances / 100, 2),
            "systemCreatedAt": ts(created),
            "_contact": contact,
            "_company": company,
        }

    def image(self, bc: dict[str, Any], dv_id: str) -> dict[str, Any]:
        contact, company = bc["_contact"], bc["_company"]
        row = {
            "opportunityid": dv_id,
            "name": bc["description"],
            "estimatedvalue": bc["estimatedValue"],
            "estimatedclosedate": bc["estimatedClosingDate"],
            "closeprobability": int(bc["chancesOfSuccessPrc"]),
            "statecode": 0,
            "statuscode": 1,
        }
        Seeder.lookup(row, "parentcontactid", "contact", contact.dv["contactid"])
        Seeder.lookup(row, "parentaccountid", "account", company.dv["accountid"])
        Seeder.lookup(row, "customerid", "account", company.dv["accountid"])
        Seeder.lookup(row, "ownerid", "systemuser", self.owner_of(bc["salespersonCode"]))
        Seeder.lookup(row, "transactioncurrencyid", "transactioncurrency", self.currency_of(N.LCY))
        self.company(row)
        return row

    def distractors(self) -> None:
        """Won/lost BC opportunities (outside the table filter) and CRONUS Canada opportunities."""
        for j in range(max(2, self.size() // 10)):
            rec = self.fresh()
            rec.bc["status"], rec.bc["closed"] = ("Won", "Lost")[j % 2], True  # type: ignore[index]
            rec.bc["dateClosed"] = day(NOW, -self.rng.randint(1, 60))  # type: ignore[index]
            rec.bc["lastModifiedDateTime"] = ts(self.s.sync_time(self.m))  # type: ignore[index]
            self.emit(rec, dv=False)
        rec = self.fresh()
        self.company(rec.dv, own=False)  # type: ignore[arg-type]
        self.s.stamp_dv(rec.dv, self.s.sync_time(self.m), self.s.person())  # type: ignore[arg-type]
        self.emit(rec, bc=False)

    def out_of_scope(self) -> list[tuple[str, Callable[[Rec], None]]]:
        def won(rec: Rec) -> None:
            rec.bc["status"], rec.bc["closed"], rec.bc["dateClosed"] = "Won", True, day(rec.t)  # type: ignore[index]

        return [("BC opportunity won", won), ("opportunity belongs to CRONUS Canada", self.other_company)]

    def error(self, rec: Rec, fld: tuple[str, str]) -> str:
        return f"The Contact {rec.bc['contactNumber']} is not coupled. Opportunity: {rec.bc['number']}"  # type: ignore[index]


class Invoices(Kit):
    drift = (
        ("dueDate", "duedate"),
        ("billToCity", "billto_city"),
        ("totalAmountIncludingTax", "totalamount"),
        ("salesperson", "ownerid"),
        ("shipToName", "shipto_name"),
    )

    def size(self) -> int:
        return self.s.n

    def make(self, i: int) -> dict[str, Any]:
        rng = self.rng
        cust = rng.choice(self.s.pools["customers"])
        c = cust.bc
        addr = {k: c[k] for k in ("addressLine1", "addressLine2", "city", "state", "country", "postalCode")}  # type: ignore[index]
        names = ("AddressLine1", "AddressLine2", "City", "State", "Country", "PostCode")
        row: dict[str, Any] = {
            "id": gid("salesInvoice", i),
            "number": f"{103001 + i}",
            "externalDocumentNumber": f"PO-{50000 + i}",
            "customerId": c["id"],
            "customerNumber": c["number"],
            "customerName": c["displayName"],  # type: ignore[index]
            "billToName": c["displayName"],
            "billToCustomerId": c["id"],
            "billToCustomerNumber": c["number"],  # type: ignore[index]
            "shipToName": c["displayName"],
            "shipToContact": "",
            "currencyId": c["currencyId"],  # type: ignore[index]
            "currencyCode": c["currencyCode"],
            "paymentTermsId": c["paymentTermsId"],  # type: ignore[index]
            "shipmentMethodId": c["shipmentMethodId"],
            "salesperson": c["salespersonCode"],  # type: ignore[index]
            "pricesIncludeTax": False,
            "discountAmount": 0.0,
            "discountAppliedBeforeTax": True,
            "phoneNumber": c["phoneNumber"],
            "email": c["email"],
            "_customer": cust,  # type: ignore[index]
        }
        for prefix in ("sellTo", "billTo", "shipTo"):
            row.update({prefix + n: v for n, v in zip(names, addr.values(), strict=True)})
        return row

    def lines_for(self, inv: dict[str, Any], count: int) -> list[dict[str, Any]]:
        """BC lines (totals into the header); 80 % items, 20 % resources."""
        rng = self.rng
        tax_pct = 8.0 if inv["_customer"].bc["taxLiable"] else 0.0
        lines = []
        for seq in range(1, count + 1):
            if rng.random() < 0.8:
                prod = rng.choice(self.s.pools["items"])
                kind, unit, item_id = "Item", prod.bc["baseUnitOfMeasureCode"], prod.bc["id"]  # type: ignore[index]
            else:
                prod = rng.choice(self.s.pools["resources"])
                kind, unit, item_id = "Resource", "HOUR", BLANK_GUID
            qty = float(rng.randint(1, 12))
            price = prod.bc["unitPrice"]  # type: ignore[index]
            amount = round(qty * price, 2)
            tax = round(amount * tax_pct / 100, 2)
            lines.append(
                {
                    "id": gid("salesInvoiceLine", inv["id"], seq),
                    "documentId": inv["id"],
                    "sequence": seq * 10000,
                    "itemId": item_id,
                    "lineType": kind,
                    "lineObjectNumber": prod.bc["number"],  # type: ignore[index]
                    "description": prod.bc["displayName"],
                    "unitOfMeasureId": self.s.pools["units"][unit][0],  # type: ignore[index]
                    "unitOfMeasureCode": unit,
                    "quantity": qty,
                    "unitPrice": price,
                    "amountExcludingTax": amount,
                    "taxCode": "FURNITURE" if tax_pct else "",
                    "taxPercent": tax_pct,
                    "totalTaxAmount": tax,
                    "amountIncludingTax": round(amount + tax, 2),
                    "netAmount": amount,
                    "netTaxAmount": tax,
                    "netAmountIncludingTax": round(amount + tax, 2),
                    "_product": prod,
                }
            )
        return lines

    def settle(self, inv: dict[str, Any], lines: list[dict[str, Any]], t: int) -> None:
        """Dates, totals and payment status of a posted invoice whose last change was at ``t``."""
        rng = self.rng
        posting = t - rng.randint(0, 20) * DAY
        inv["invoiceDate"] = inv["postingDate"] = day(posting)
        due_days = {"NET30": 30, "2%10NET30": 30, "NET45": 45, "NET60": 60}
        code = next(
            k for k, (pid, _) in self.s.pools["payment_terms"].items() if pid == inv["paymentTermsId"]
        )
        inv["dueDate"] = day(posting, due_days.get(code, 30))
        excl = (
            round(sum(ln["amountExcludingTax"] for ln in lines), 2)
            if lines
            else round(rng.uniform(100, 5000), 2)
        )
        tax = round(sum(ln["totalTaxAmount"] for ln in lines), 2) if lines else 0.0
        inv["totalAmountExcludingTax"], inv["totalTaxAmount"] = excl, tax
        inv["totalAmountIncludingTax"] = round(excl + tax, 2)
        roll = rng.random()
        inv["status"] = "Paid" if roll < 0.55 else "Open"
        inv["remainingAmount"] = (
            0.0
            if roll < 0.55
            else round(inv["totalAmountIncludingTax"] / 2, 2)
            if roll < 0.65
            else inv["totalAmountIncludingTax"]
        )
        for ln in lines:
            ln["shipmentDate"] = inv["postingDate"]

    def image(self, bc: dict[str, Any], dv_id: str) -> dict[str, Any]:
        cust = bc["_customer"]
        if "status" not in bc:
            self.settle(bc, bc.get("_lines", []), NOW - 10 * DAY)
        total, remaining = bc["totalAmountIncludingTax"], bc["remainingAmount"]
        state, status = (2, 100001) if remaining == 0 else (2, 100002) if remaining < total else (0, 4)
        terms = {pid: opt for pid, opt in self.s.pools["payment_terms"].values()}
        row: dict[str, Any] = {
            "invoiceid": dv_id,
            "name": bc["number"],
            "invoicenumber": bc["number"],
            "duedate": bc["dueDate"],
            "datedelivered": date_time(bc["postingDate"]),
            "totalamountlessfreight": bc["totalAmountExcludingTax"],
            "totalamount": total,
            "totallineitemamount": bc["totalAmountExcludingTax"],
            "totaltax": bc["totalTaxAmount"],
            "discountamount": bc["discountAmount"],
            "freightamount": 0.0,
            "totaldiscountamount": 0.0,
            "totallineitemdiscountamount": 0.0,
            "ispricelocked": True,
            "paymenttermscode": terms[bc["paymentTermsId"]],
            "exchangerate": 1.0,
            "emailaddress": nz(bc["email"]),
            "statecode": state,
            "statuscode": status,
            "_accountid_value": cust.dv["accountid"],
        }
        for bc_pre, dv_pre in (("billTo", "billto_"), ("shipTo", "shipto_")):
            row[dv_pre + "name"] = nz(bc[bc_pre + "Name"])
            for b, d in (
                ("AddressLine1", "line1"),
                ("AddressLine2", "line2"),
                ("City", "city"),
                ("State", "stateorprovince"),
                ("Country", "country"),
                ("PostCode", "postalcode"),
            ):
                row[dv_pre + d] = nz(bc[bc_pre + b])
        Seeder.lookup(row, "customerid", "account", cust.dv["accountid"])
        Seeder.lookup(
            row, "transactioncurrencyid", "transactioncurrency", self.currency_of(bc["currencyCode"])
        )
        Seeder.lookup(row, "ownerid", "systemuser", self.owner_of(bc["salesperson"]))
        self.company(row)
        return row

    def build_healthy(self) -> list[Rec]:
        """Invoices with their lines; lines are coupled by the same run (POSTEDSALESLINE-INV in the header job)."""
        line_kit = Lines(self.s, BY_NAME["POSTEDSALESLINE-INV"])
        out: list[Rec] = []
        carriers: list[tuple[Rec, Rec]] = []
        for _ in range(self.size() + self.carriers()):
            bc = self.make(self.index)
            self.index += 1
            lines = self.lines_for(bc, self.rng.randint(1, 4))
            t = self.s.sync_time(self.m)
            self.settle(bc, lines, t)
            rec = Rec(bc, self.image(bc, gid(self.m.name, "dv", bc["id"])))
            customer = bc["_customer"]
            self.s.couple(self, rec, t, "bc")
            self.emit(rec)
            for ln in lines:
                lrec = Rec(ln, line_kit.image_for(ln, rec.dv))  # type: ignore[arg-type]
                self.s.couple(line_kit, lrec, t, "bc")
                line_kit.emit(lrec)
            out.append(rec)
            if len(out) > self.size() and rec.dv["statecode"] == 0:  # type: ignore[index]
                carriers.append((rec, customer))
        self.s.pools["carriers"] = carriers or [(out[-1], customer)]
        return out

    def carriers(self) -> int:
        """Extra healthy invoices that carry the planted invoice lines (kept Active, i.e. editable)."""
        return max(3, self.s.n // 200)

    def out_of_scope(self) -> list[tuple[str, Callable[[Rec], None]]]:
        return [("invoice belongs to CRONUS Canada", self.other_company)]

    def error(self, rec: Rec, fld: tuple[str, str]) -> str:
        return (
            f"The Customer {rec.bc['customerNumber']} is not coupled to a Dataverse account. "  # type: ignore[index]
            f"Posted Sales Invoice: {rec.bc['number']}"
        )  # type: ignore[index]

    def publish(self) -> None:
        self.s.pools["invoices"] = len(self.healthy_list(self.m.name))


class Lines(Kit):
    """Posted invoice lines. Healthy lines come with their invoices; planted lines hang on carriers."""

    bc_modified = None
    has_company = False
    drift = (
        ("quantity", "quantity"),
        ("unitPrice", "priceperunit"),
        ("amountIncludingTax", "extendedamount"),
    )

    def size(self) -> int:
        return self.s.n * 5 // 2

    def pending_sides(self) -> tuple[str, ...]:
        return ("dataverse",)  # posted BC lines carry no modification time and cannot change

    def build_healthy(self) -> list[Rec]:
        return []  # made by Invoices.build_healthy

    def make(self, i: int) -> dict[str, Any]:
        carriers = self.s.pools["carriers"]
        carrier, customer = carriers[i % len(carriers)]
        bc = carrier.bc
        invoices = self.s.kits["POSTEDSALESINV-INV"]
        line = invoices.lines_for({"id": bc["id"], "_customer": customer}, 1)[0]  # type: ignore[index]
        line["id"] = gid("salesInvoiceLine", "planted", i)
        line["sequence"] = 100000 + i * 10000
        line["shipmentDate"] = bc["postingDate"]  # type: ignore[index]
        line["_invoice"] = carrier.dv
        return line

    def image(self, bc: dict[str, Any], dv_id: str) -> dict[str, Any]:
        return self.image_for(bc, bc["_invoice"], dv_id)

    def image_for(self, ln: dict[str, Any], inv: dict[str, Any], dv_id: str | None = None) -> dict[str, Any]:
        prod = ln["_product"]
        unit = self.s.pools["units"][ln["unitOfMeasureCode"]][2]
        row: dict[str, Any] = {
            "invoicedetailid": dv_id or gid(self.m.name, "dv", ln["id"]),
            "invoicedetailname": ln["description"],
            "isproductoverridden": False,
            "ispriceoverridden": True,
            "quantity": ln["quantity"],
            "priceperunit": ln["unitPrice"],
            "baseamount": ln["amountExcludingTax"],
            "extendedamount": ln["amountIncludingTax"],
            "manualdiscountamount": ln.get("discountAmount", 0.0),
            "volumediscountamount": 0.0,
            "tax": ln["totalTaxAmount"],
            "exchangerate": 1.0,
            "lineitemnumber": ln["sequence"],
            "sequencenumber": ln["sequence"] // 10000,
            "actualdeliveryon": date_time(ln.get("shipmentDate")),
            "_ownerid_value": inv["_ownerid_value"],
            **{
                k: inv[k]
                for k in (
                    "shipto_name",
                    "shipto_line1",
                    "shipto_line2",
                    "shipto_city",
                    "shipto_stateorprovince",
                    "shipto_postalcode",
                    "shipto_country",
                )
            },
        }
        Seeder.lookup(row, "invoiceid", "invoice", inv["invoiceid"])
        Seeder.lookup(row, "productid", "product", prod.dv["productid"])
        Seeder.lookup(row, "uomid", "uom", unit)
        Seeder.lookup(
            row, "transactioncurrencyid", "transactioncurrency", inv["_transactioncurrencyid_value"]
        )
        return row

    def key_text(self, bc: dict[str, Any] | None) -> str:
        bc = bc or {}
        return f"{bc.get('documentId')},{bc.get('sequence')}"

    def bc_ref(self, bc: dict[str, Any] | None) -> str:
        return f"Sales Invoice Line: {self.key_text(bc)}"

    def dataverse_born(self, dv: dict[str, Any] | None) -> None:
        """An invoice product added by hand in Sales (a write-in line)."""
        if dv is not None:
            dv["isproductoverridden"] = True
            dv["productdescription"] = dv["invoicedetailname"]

    def error(self, rec: Rec, fld: tuple[str, str]) -> str:
        return (
            f"Invoice lines cannot be synchronized on their own. Synchronize the posted sales invoice instead. "
            f"{self.bc_ref(rec.bc)}"
        )


KITS: dict[str, type[Kit]] = {  # dependency order: each kit refers only to the pools of kits above it
    "SALESPEOPLE": Salespeople,
    "CURRENCY": Currencies,
    "UNIT OF MEASURE": Units,
    "CUSTOMER": Customers,
    "CONTACT": Contacts,
    "ITEM-PRODUCT": Items,
    "RESOURCE-PRODUCT": Resources,
    "CUSTPRCGRP-PRICE": PriceGroups,
    "SALESPRC-PRODPRICE": SalesPrices,
    "OPPORTUNITY": Opportunities,
    "POSTEDSALESINV-INV": Invoices,
    "POSTEDSALESLINE-INV": Lines,
}
