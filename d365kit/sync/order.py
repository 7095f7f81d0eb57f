"""The order mappings are written in: each after every mapping it depends on.

A mapping depends on its ``dependencies`` (BC's Dependency Filter), on the mappings its lookups go through
(``lookup:CURRENCY``) and on the tables its code-level links use (``rules.CODE_DEPENDENCIES``: contacts
need their customer's coupling, invoice lines their invoice's, item's and resource's). So currency and
salespeople come before customers, customers before contacts, items before invoice lines. Ties keep the
catalog's order; a cycle (none in the default catalog) is broken in catalog order too.
"""

from __future__ import annotations

from collections.abc import Iterable

from d365kit.mapping import Catalog, TableMapping
from d365kit.sync.rules import CODE_DEPENDENCIES


def dependencies(catalog: Catalog, m: TableMapping) -> set[str]:
    """The mappings ``m`` must come after (names in ``catalog``)."""
    names = set(m.dependencies)
    names |= {f.transform[7:] for f in m.compared if f.transform and f.transform.startswith("lookup:")}
    for table_id in CODE_DEPENDENCIES.get(m.bc_table_id, ()):  # type: ignore[arg-type]
        names |= {other.name for other in catalog if other.bc_table_id == table_id}
    return {n for n in names if n in catalog and n != m.name}


def dependency_order(catalog: Catalog, names: Iterable[str]) -> list[str]:
    """``names`` sorted so that every mapping comes after the mappings it (transitively) depends on."""
    wanted = set(names)
    rank = {name: i for i, name in enumerate(catalog.names)}
    graph = {m.name: dependencies(catalog, m) for m in catalog}
    done: list[str] = []
    placed: set[str] = set()
    while len(placed) < len(graph):
        ready = [n for n in graph if n not in placed and graph[n] <= placed]
        if not ready:  # a cycle: take the first remaining mapping in catalog order
            ready = [min((n for n in graph if n not in placed), key=rank.__getitem__)]
        name = min(ready, key=rank.__getitem__)
        placed.add(name)
        done.append(name)
    missing = wanted - set(graph)
    return [n for n in done if n in wanted] + sorted(missing)
