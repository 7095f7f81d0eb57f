"""The house rules of docs/architecture.md, checked on the source: layers, no cycles, one error tree,
a pinned public API. The layer table is read from the docs, so the rule and its description cannot drift."""

from __future__ import annotations

import ast
import inspect
import re
from collections import defaultdict
from pathlib import Path

import pytest

import d365kit
from d365kit import errors
from d365kit.odata import errors as wire_errors

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "d365kit"
DOCS = ROOT / "docs" / "architecture.md"


def _block(name: str) -> str:
    match = re.search(rf"```{name}\n(.*?)```", DOCS.read_text(), re.S)
    assert match, f"docs/architecture.md has no ```{name} block"
    return match.group(1)


def _layers() -> list[tuple[str, list[str]]]:
    rows = []
    for line in _block("layers").strip().splitlines():
        name, _, modules = line.partition(":")
        rows.append((name.strip(), modules.split()))
    return rows


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every d365kit module ``name`` imports, at module level or inside functions (TYPE_CHECKING too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("d365kit")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            if not base.startswith("d365kit"):
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.add(sub if sub in MODULES else base)
    return out - {name}


def _layer_of(module: str, layers: list[tuple[str, list[str]]]) -> int:
    """The index of the most specific layer entry naming ``module`` or a package holding it."""
    best, depth = -1, -1
    for i, (_, names) in enumerate(layers):
        for entry in names:
            if (module == entry or module.startswith(entry + ".")) and entry.count(".") > depth:
                best, depth = i, entry.count(".")
    return best


def test_every_module_has_a_layer():
    layers = _layers()
    orphans = [m for m in MODULES if _layer_of(m, layers) < 0]
    assert orphans == [], f"add these modules to a layer in docs/architecture.md: {orphans}"


def test_imports_follow_the_layers():
    layers = _layers()
    names = [n for n, _ in layers]
    emulator = names.index("emulator")
    may_start_sandbox = {names.index("facade"), names.index("presentation")}
    broken = []
    for module, path in MODULES.items():
        mine = _layer_of(module, layers)
        for target in _imports(module, path):
            theirs = _layer_of(target, layers)
            if mine == emulator:
                ok = theirs == emulator
            elif theirs == emulator:
                ok = mine in may_start_sandbox
            else:
                ok = theirs <= mine
            if not ok:
                broken.append(f"{module} ({names[mine]}) imports {target} ({names[theirs]})")
    assert broken == [], "layer rule broken (docs/architecture.md):\n" + "\n".join(sorted(broken))


def test_no_import_cycle_outside_the_sandbox():
    graph = defaultdict(set)
    for module, path in MODULES.items():
        if module.startswith("d365kit.sandbox"):
            continue
        for target in _imports(module, path):
            if not target.startswith("d365kit.sandbox") and target != "d365kit":
                graph[module].add(target)
    # A package's __init__ re-exporting its submodules is not a cycle with them: skip package -> child.
    for module in list(graph):
        graph[module] = {t for t in graph[module] if not t.startswith(module + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            pytest.fail("import cycle: " + " -> ".join(cycle))


def test_the_rule_checker_sees_function_level_imports(tmp_path):
    """The checker must catch a lazy import too: feed it one."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from d365kit.widgets import ReconcilePanel\n")
    assert "d365kit.widgets" in _imports("d365kit.reconcile", probe)


def test_no_domain_signature_takes_an_untyped_workspace():
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in PACKAGE.rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\bws: Any\b", line)
    ]
    assert offenders == []


def test_every_error_class_is_in_the_tree_and_exported():
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if c.__module__ == errors.__name__]
    assert classes and all(issubclass(c, d365kit.D365Error) for c in classes)
    for cls in classes:
        assert getattr(d365kit, cls.__name__) is cls, f"{cls.__name__} is not exported from d365kit"
        assert cls.__name__ in errors.__doc__, f"{cls.__name__} is not drawn in the errors module's docstring"


def _raised_names() -> set[str]:
    names = set()
    for module, path in MODULES.items():
        if module.startswith("d365kit.sandbox"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Raise)
                and isinstance(node.exc, ast.Call)
                and isinstance(node.exc.func, ast.Name)
            ):
                names.add(node.exc.func.id)
    return names


def _is_ours(name: str) -> bool:
    """A d365kit error class, or a factory of one (``parse_error`` builds the typed ODataError)."""
    if isinstance(getattr(errors, name, None), type):
        return issubclass(getattr(errors, name), d365kit.D365Error)
    factory = getattr(wire_errors, name, None)
    return callable(factory) and "ODataError" in str(inspect.signature(factory).return_annotation)


def test_every_error_raised_on_purpose_is_a_d365error():
    """``except d365kit.D365Error`` catches everything the package raises itself (not re-raised ones)."""
    foreign = sorted(n for n in _raised_names() if not _is_ours(n))
    assert foreign == [], f"raise a d365kit.errors class instead of: {foreign}"


def test_public_api_is_pinned():
    assert sorted(d365kit.__all__) == sorted(
        [
            *errors.__all__,
            "Catalog",
            "Profile",
            "Q",
            "Query",
            "ReconcileResult",
            "SyncPlan",
            "SyncRun",
            "Systems",
            "Workspace",
            "__version__",
            "connect",
            "get_profile",
            "load_catalog",
        ]
    )
    for name in d365kit.__all__:
        assert hasattr(d365kit, name)


def test_internal_modules_are_listed_and_exist():
    internal = _block("internal").split()
    assert internal and all(name in MODULES for name in internal), [n for n in internal if n not in MODULES]


def test_one_except_clause_catches_what_a_first_day_goes_through(ws, monkeypatch, tmp_path):
    """A wrong secret, an unknown profile, a typo in an entity set, a bad filter value: each a D365Error."""
    from d365kit.config import replace

    monkeypatch.setenv("D365KIT_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("WRONG_SECRET", "wrong")
    bad = replace(
        ws.profile, name="bad", secret_env="WRONG_SECRET", sandbox_dir=None, token_cache=str(tmp_path / "t")
    )
    attempts = [
        lambda: d365kit.connect(bad).bc.companies(),
        lambda: d365kit.get_profile("nope"),
        lambda: ws.bc.to_frame("customerz"),
        lambda: d365kit.Q.eq("name", object()),
        lambda: ws.reconcile("NO SUCH MAPPING"),
    ]
    for attempt in attempts:
        with pytest.raises(d365kit.D365Error):
            attempt()
