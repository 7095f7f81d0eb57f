"""Deterministic CRONUS-shaped seed with planted problems: ``seed(store, *, scale=None) -> manifest``.

The store gets one BC company ("CRONUS USA, Inc."), its Dataverse ``bcbi_company`` (and a second one,
"CRONUS Canada", for out-of-scope rows), master data and documents on both sides for the twelve default
mappings (``seed_catalog.MAPPINGS``), the couplings (companion ``crmIntegrationRecords``), the table and
field mappings, and 30 days of sync-job history with errors. Everything derives from a fixed random seed,
uuid5 ids over stable names and a fixed clock (``NOW``), so the same scale gives the same manifest.

Agreement. Every coupled pair that is not a planted problem agrees on every mapped field whose BC side is
exposed by an API (``Field.bc`` set), read through these transforms: lookups through couplings
(``currencyCode`` -> the coupled transactioncurrency, ``salespersonCode``/``salesperson`` -> ``ownerid``
= the systemuser coupled to that salesperson, ``baseUnitOfMeasureCode`` -> the coupled uomschedule,
``salesCode`` -> the coupled pricelevel, ``itemNumber``/``contactNumber`` -> the coupled product/contact),
option maps (``paymentTermsId`` -> payment terms code -> NET30 1, 2%10NET30 2, NET45 3, NET60 4;
``shipmentMethodId`` -> FOB 1, NOCHARGE 2), and a blank BC text equals a null Dataverse column (the
sync writes "" and Dataverse stores null). Choices: the LCY (USD) is a row of BC ``currencies`` coupled to
the Dataverse base currency, and LCY rows carry ``currencyCode`` "USD" (as API v2.0 renders it) — also on
the companion ``salesPrices`` — so the currency lookup needs no special case; the seed creates no
Dataverse default price list; planted records are fresh records that no other row refers to (planted
invoices have no lines; planted invoice lines hang on healthy "carrier" invoices).

Timestamps. The coupling's ``lastSynchModifiedOn`` is the BC row's ``lastModifiedDateTime`` and
``lastSynchCrmModifiedOn`` the Dataverse row's ``modifiedon`` at the last successful sync. A side is
*modified* when its timestamp is strictly later than the coupling's timestamp for that side. BC rows
without a modification timestamp (``salesInvoiceLines``) are never modified. Scheduled jobs run every 30
minutes from ``NOW`` - 30 days; the last run is at ``NOW`` - 30 min (OPPORTUNITY: manual runs every 4 h;
invoice lines run in the header's job), so changes after a mapping's last run are not yet synchronized.

Categories (the contract the reconcile engine is tested against; precision and recall are checked per
mapping against ``manifest["problems"]``). For one mapping, every coupling and every in-scope uncoupled
row lands in exactly one category, taken in this order:

1. ``coupled_missing_bc`` / ``coupled_missing_dataverse``: a coupling whose BC row (``integrationId``) /
   Dataverse row (``crmId``) does not exist; the other row exists and is in scope.
2. ``duplicate_coupling``: two couplings of the mapping's table share one BC id (``bc_id`` set,
   ``dataverse_id`` null) or one Dataverse id (``dataverse_id`` set, ``bc_id`` null); ``coupling_ids``
   lists both.
3. ``out_of_scope``: a coupling whose Dataverse row fails the mapping's integration table filter (other
   ``bcbi_companyid``, inactive/retired ``statecode``, disabled systemuser) or whose BC row fails the table
   filter (blocked customer/item/resource, person contact without company, won opportunity, sales price
   not for a customer price group).
4. ``skipped``: the coupling has ``skipped`` = true and last result Failure; its error rows exist.
5. ``failed``: last result (``lastSynchResult`` for Dataverse->BC, ``lastSynchCrmResult`` for BC->Dataverse)
   is Failure, not skipped; an error row exists. Skipped and failed records also carry the unsynchronized
   change that failed (``fields``, ``changed_side`` = the source side).
6. ``conflict`` (bidirectional mappings only): both sides modified and a bidirectional field differs.
7. ``pending``: exactly one side modified (``changed_side``) and a mapped field differs.
8. ``drift``: neither side modified, yet a mapped field differs (``fields``).
9. ``in_sync``: everything else coupled (not listed in the manifest).
Uncoupled rows: ``uncoupled_bc`` — an in-scope BC row no coupling of the mapping's table refers to;
``uncoupled_dataverse`` — an in-scope Dataverse row no coupling refers to. ``match`` names the uncoupled
row on the other side whose mapped fields are all equal (a planted matched pair is listed twice, once per
side) or is null when there is no good match. Out-of-scope uncoupled rows (prospect and CRONUS Canada
accounts, company contacts, blocked customers, won/lost BC opportunities, disabled/integration/application
systemusers) are deliberately present and belong to no category.
"""

from __future__ import annotations

import random
import re
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from d365kit.sandbox import schema
from d365kit.sandbox.seed_catalog import BIDI, BY_NAME, FROM, JOB_OF, MAPPINGS, TO, Mapping
from d365kit.sandbox.store import Store, lookup_type_column

SEED_VERSION = 1
RANDOM_SEED = 20261120
NOW = 1_795_176_000_000  # the seed's clock: 2026-11-20T12:00:00.000Z in epoch milliseconds
HISTORY_DAYS = 30
MINUTE = 60_000
DAY = 1_440 * MINUTE
START = NOW - HISTORY_DAYS * DAY
DEFAULT_SCALE = 60
PLANT_RATE = 0.005
CHUNK = 50_000
BLANK_GUID = "00000000-0000-0000-0000-000000000000"
_NS = uuid.UUID("2f8e6c1a-4b3d-5e7f-9a0b-c1d2e3f4a5b6")

CATEGORIES = (
    "drift",
    "conflict",
    "pending",
    "coupled_missing_bc",
    "coupled_missing_dataverse",
    "duplicate_coupling",
    "uncoupled_bc",
    "uncoupled_dataverse",
    "out_of_scope",
    "skipped",
    "failed",
)


def gid(*parts: object) -> str:
    """A stable lower-case GUID for a name (uuid5)."""
    return str(uuid.uuid5(_NS, "/".join(map(str, parts))))


def ts(ms: int) -> str:
    """Epoch milliseconds in the store's DateTimeOffset format."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def day(ms: int, shift_days: int = 0) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ms // 1000 + shift_days * 86_400))


NOW_TEXT = ts(NOW)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_SUFFIXES = (" Intl.", " West", " Group")


def altered(value: Any, salt: int, max_length: int | None = None) -> Any:
    """A realistic different value (different also after trimming and case folding)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return round(float(value) * (1.15 + 0.1 * salt) + 10 + salt, 2)
    if not value:
        return ("Changed", "Updated", "Revised")[salt]
    if _DATE.fullmatch(value):
        return (date.fromisoformat(value) + timedelta(days=14 + 7 * salt)).isoformat()
    if "@" in value:
        return (("new.", "info.", "sales.")[salt] + value)[: max_length or None]
    digits = [i for i, c in enumerate(value) if c.isdigit()]
    if digits:
        i = digits[-1]
        return value[:i] + str((int(value[i]) + 3 + salt) % 10) + value[i + 1 :]
    suffix = _SUFFIXES[salt]
    base = value if not max_length else value[: max_length - len(suffix)]
    return base + suffix


@dataclass
class Rec:
    """One BC row and its Dataverse image (either may be absent) plus the couplings that join them."""

    bc: dict[str, Any] | None
    dv: dict[str, Any] | None
    couplings: list[dict[str, Any]] = field(default_factory=list)
    t: int = 0  # time of the source change that was last synchronized


class Seeder:
    """Builds and inserts everything; kits (``seed_kits``) supply the per-mapping rows."""

    def __init__(self, store: Store, scale: int | None):
        self.store = store
        self.scale = scale
        self.n = scale if scale is not None else DEFAULT_SCALE
        if self.n < 10:
            raise ValueError("scale must be at least 10")
        self.rng = random.Random(RANDOM_SEED)
        self.company_id = gid("company", "CRONUS USA, Inc.")
        self.own_company = gid("bcbi_company", "CRONUS USA, Inc.")
        self.other_company = gid("bcbi_company", "CRONUS Canada")
        self.pending: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.counts: Counter[str] = Counter()
        self.problems: list[dict[str, Any]] = []
        self.synced: Counter[tuple[str, int, str]] = Counter()  # (mapping, run, dir) -> records synced
        self.failures: list[dict[str, Any]] = []  # planted error rows (seed_jobs adds history)
        self.integration_user = gid("systemuser", "# Business Central")
        self.system_user = gid("systemuser", "SYSTEM")
        self.people: list[str] = []  # healthy coupled systemusers: who edits in Dataverse
        self.pools: dict[str, Any] = {}  # what later kits refer to (healthy records only)
        self.healthy: dict[str, list[Rec]] = {}
        self.kits: dict[str, Any] = {}

    # -- time ----------------------------------------------------------------------------------------

    @staticmethod
    def every(m: Mapping) -> int:
        minutes = m.job_every_min or BY_NAME[JOB_OF[m.name]].job_every_min
        return minutes * MINUTE  # type: ignore[operator]

    def last_run(self, m: Mapping) -> int:
        step = self.every(m)
        return START + (HISTORY_DAYS * DAY // step - 1) * step

    def run_of(self, m: Mapping, t: int) -> int:
        return -(-(t - START) // self.every(m))

    def run_time(self, m: Mapping, k: int) -> int:
        return START + k * self.every(m)

    def sync_time(self, m: Mapping, lo: int | None = None, hi: int | None = None) -> int:
        """A source-change time inside the history, synchronized by a later run of the mapping."""
        lo = START + self.every(m) if lo is None else lo
        hi = self.last_run(m) - MINUTE if hi is None else hi
        return self.rng.randint(lo, hi)

    def after_last_run(self, m: Mapping) -> int:
        return self.rng.randint(self.last_run(m) + MINUTE, NOW - MINUTE)

    @staticmethod
    def job_id(m: Mapping, k: int, direction: str) -> str:
        return gid("job", JOB_OF.get(m.name, m.name), k, direction)

    # -- rows ----------------------------------------------------------------------------------------

    def emit(self, service: str, entity_set: str, row: dict[str, Any]) -> None:
        self.pending.setdefault((service, entity_set), []).append(row)

    def emit_bc(self, m: Mapping, row: dict[str, Any]) -> None:
        """A BC row; keys starting with "_" are the kits' working references, not properties."""
        for key in [k for k in row if k[0] == "_"]:
            del row[key]
        self.emit(m.bc_service, m.bc_set, row)

    def flush(self) -> None:
        """Insert everything emitted so far (chunked, one transaction per chunk)."""
        for (service, name), rows in self.pending.items():
            es = self.store.entity(service, name)
            company = self.company_id if es.company_scoped else None
            for i in range(0, len(rows), CHUNK):
                self.store.bulk_insert(es, rows[i : i + CHUNK], company=company)
            self.counts[f"{service}/{name}"] += len(rows)
        self.pending = {}

    @staticmethod
    def lookup(row: dict[str, Any], column: str, target_logical: str | None, value: str | None) -> None:
        """Set a Dataverse lookup column and its hidden target type."""
        row[f"_{column}_value"] = value
        row[lookup_type_column(column)] = target_logical if value else None

    def stamp_dv(self, row: dict[str, Any], modified: int, by: str, created: int | None = None) -> None:
        row["modifiedon"] = ts(modified)
        row["_modifiedby_value"] = by
        created = modified - self.rng.randint(0, 400) * DAY if created is None else created
        row["createdon"] = ts(min(created, modified))
        row.setdefault("_createdby_value", by)

    def person(self) -> str:
        return self.rng.choice(self.people) if self.people else self.system_user

    # -- couplings -----------------------------------------------------------------------------------

    def couple(
        self,
        kit: Any,
        rec: Rec,
        t: int,
        source: str,
        bc_row: dict[str, Any] | None = None,
        dv_row: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Synchronize ``rec`` at the run after ``t`` (source side changed at ``t``) and couple it."""
        m: Mapping = kit.m
        bc = bc_row or rec.bc
        dv = dv_row or rec.dv
        k = self.run_of(m, t)
        dest = self.run_time(m, k) + self.rng.randint(2_000, 90_000)
        bc_time, dv_time = (t, dest) if source == "bc" else (dest, t)
        if kit.bc_modified:
            bc[kit.bc_modified] = ts(bc_time)  # type: ignore[index]
        self.stamp_dv(dv, dv_time, self.integration_user if source == "bc" else self.person())  # type: ignore[arg-type]
        direction = "to" if source == "bc" else "from"
        self.synced[(m.name, k, direction)] += 1
        bidi = m.direction == BIDI
        to_side = bidi or m.direction == TO
        from_side = bidi or m.direction == FROM
        c = {
            "id": gid("coupling", m.name, bc["id"], dv[m.dv_key]),  # type: ignore[index]
            "crmId": dv[m.dv_key],  # type: ignore[index]
            "integrationId": bc["id"],  # type: ignore[index]
            "tableId": m.table_id,
            "lastSynchModifiedOn": ts(bc_time),
            "lastSynchCrmModifiedOn": ts(dv_time),
            "lastSynchResult": "Success" if from_side else " ",
            "lastSynchCrmResult": "Success" if to_side else " ",
            "lastSynchJobId": self.job_id(m, k, "from") if from_side else BLANK_GUID,
            "lastSynchCrmJobId": self.job_id(m, k, "to") if to_side else BLANK_GUID,
            "skipped": False,
            "statisticsUploaded": m.name == "CUSTOMER",
        }
        rec.couplings.append(c)
        rec.t = t
        self.emit("companion", "crmIntegrationRecords", c)
        return c

    # -- the run -------------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        from d365kit.sandbox import bc_pages, seed_jobs, seed_kits
        from d365kit.sandbox.seed_plant import Planter

        seed_kits.foundation(self)
        planter = Planter(self)
        for name, kit_type in seed_kits.KITS.items():  # dependency order
            kit = self.kits[name] = kit_type(self, BY_NAME[name])
            m = kit.m
            self.healthy[m.name] = kit.build_healthy()
            kit.distractors()
            planter.plant(kit)
            kit.publish()
            self.flush()
        seed_jobs.write(self)
        self.flush()
        bc_pages.seed(
            self
        )  # rows of the BC page parts (payment methods, default dimensions): no random draws
        return self.manifest(planter)

    def manifest(self, planter: Any) -> dict[str, Any]:
        counts = {
            f"{es.service}/{es.name}": self.counts.get(f"{es.service}/{es.name}", 0)
            for es in schema.all_entity_sets()
        }
        return {
            "seed_version": SEED_VERSION,
            "scale": self.scale,
            "now": NOW_TEXT,
            "history_days": HISTORY_DAYS,
            "company": {
                "id": self.company_id,
                "name": "CRONUS USA, Inc.",
                "bcbi_companyid": self.own_company,
            },
            "other_bcbi_companyid": self.other_company,
            "counts": dict(sorted(counts.items())),
            "mappings": [m.name for m in MAPPINGS],
            "applicable": {m.name: list(planter.applicable[m.name]) for m in MAPPINGS},
            "problems": self.problems,
        }


def seed(store: Store, *, scale: int | None = None) -> dict[str, Any]:
    """Fill an empty store; return the manifest (JSON-serializable, identical for the same scale)."""
    return Seeder(store, scale).run()
