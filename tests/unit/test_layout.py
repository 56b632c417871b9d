"""The shape of k8sboot's code, read with ast (nothing imported): no import cycles, the
shared core never imports a feature (docs/architecture.md), only facts.py knows the
probe's raw answer, only the CLI imports click, and the kubeadm node's contracts (the API
server's port, the sysctls) are written in kubeadm_node.py alone."""

from __future__ import annotations

import ast
from pathlib import Path

from k8sboot.kubeadm_node import SYSCTLS

PACKAGE = Path(__file__).resolve().parents[2] / "k8sboot"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, at module level or inside a function or class (a lazy
    import still closes a cycle when its function runs), except under `if TYPE_CHECKING:`
    (not run)."""
    found: list[ast.Import | ast.ImportFrom] = []
    pending = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            pending += node.orelse
        else:
            pending += ast.iter_child_nodes(node)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in paths}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _runtime_imports(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                # `from a import b` imports the module a.b when there is one, else a's name b.
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in paths else base
                    for alias in node.names
                ]
            for target in targets:
                graph[name] |= {t for t in _with_packages(target) if t in paths}
    for name in graph:  # a module's own packages are already loading when it runs
        graph[name] = {t for t in graph[name] if t != name and not name.startswith(t + ".")}
    return graph


def _with_packages(module: str) -> list[str]:
    """`module` and the packages Python imports before it (their __init__ runs first)."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(2, len(parts) + 1)]


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def one_cycle(graph: dict[str, set[str]], members: frozenset[str]) -> list[str]:
    """A shortest import loop through the first of `members`, for the failure message."""
    start = min(members)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for target in sorted(graph[node] & members):
            if target == start:
                return [*paths[node], start]
            if target not in paths:
                paths[target] = [*paths[node], target]
                queue.append(target)
    raise AssertionError(f"no loop through {start}")


def test_no_import_cycles() -> None:
    graph = import_graph()
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(
        " -> ".join(one_cycle(graph, c)) + f"  ({len(c)} modules: {', '.join(sorted(c))})"
        for c in found
    )


# The feature packages: each holds its steps, action records and handlers. The CLI and
# workflows.py compose features; everything else is the core they share.
FEATURES = ("k8sboot.cluster", "k8sboot.etcd", "k8sboot.nodes", "k8sboot.certs", "k8sboot.health")
COMPOSERS = ("k8sboot.cli", "k8sboot.workflows")


def _within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def imports_anywhere(path: Path) -> set[str]:
    """Every k8sboot module `path` imports, at module level or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {m for m in found if m.startswith("k8sboot")}


def test_the_core_never_imports_a_feature() -> None:
    wrong = {}
    for path in PACKAGE.rglob("*.py"):
        name = module_name(path)
        if _within(name, FEATURES + COMPOSERS):
            continue
        features = sorted(m for m in imports_anywhere(path) if _within(m, FEATURES))
        if features:
            wrong[name] = features
    assert not wrong, f"core modules that import a feature: {wrong}"


def test_only_facts_reads_the_probes_raw_answer() -> None:
    """Steps and checks read observed state through HostFacts' typed accessors: the shape
    of the probe's JSON is known in facts.py alone."""
    readers = sorted(
        module_name(path)
        for path in PACKAGE.rglob("*.py")
        if path.name != "facts.py"
        and any(
            isinstance(node, ast.Attribute) and node.attr == "data"
            for node in ast.walk(ast.parse(path.read_text()))
        )
    )
    assert readers == []


def test_the_graph_sees_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [frozenset("abc")]
    assert one_cycle(graph, frozenset("abc")) == ["a", "b", "c", "a"]


def test_the_graph_reads_relative_and_from_imports() -> None:
    graph = import_graph()
    assert "k8sboot.errors" in graph["k8sboot.facts"]
    assert "k8sboot.etcd.client" in graph["k8sboot.etcd.topology"]
    assert "k8sboot.etcd.checks" in graph["k8sboot.etcd.verify"]
    assert "k8sboot.executor" in graph["k8sboot.etcd.install"]
    assert "k8sboot.spec" not in graph["k8sboot.spec.model"]  # its own package


def test_only_the_cli_imports_click() -> None:
    importers = sorted(
        module_name(path)
        for path in PACKAGE.rglob("*.py")
        if not _within(module_name(path), ("k8sboot.cli",))
        and any(
            (
                isinstance(node, ast.Import)
                and any(a.name.split(".")[0] == "click" for a in node.names)
            )
            or (isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "click")
            for node in ast.walk(ast.parse(path.read_text()))
        )
    )
    assert importers == []


SHIPPED = [PACKAGE, PACKAGE.parent / "playbooks", PACKAGE.parent / "templates"]


def _shipped_files_saying(text: str, roots: list[Path] = SHIPPED) -> list[str]:
    return sorted(
        str(path.relative_to(PACKAGE.parent))
        for root in roots
        for path in root.rglob("*")
        if path.is_file() and path.suffix != ".pyc" and text in path.read_text(errors="replace")
    )


def test_the_api_server_port_is_written_once() -> None:
    assert _shipped_files_saying("6443") == ["k8sboot/kubeadm_node.py"]


def test_the_sysctls_kubeadm_needs_are_named_once() -> None:
    for name in SYSCTLS:
        assert _shipped_files_saying(f'"{name}"') == ["k8sboot/kubeadm_node.py"], name


def test_templates_take_the_kubeadm_node_paths_from_kubeadm_node() -> None:
    templates = [PACKAGE.parent / "templates"]
    for path in ("/etc/kubernetes", "/var/lib/etcd"):
        assert _shipped_files_saying(path, templates) == [], path
    assert _shipped_files_saying("KUBEADM_TMP = ") == ["k8sboot/kubeadm_node.py"]
