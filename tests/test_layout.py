"""The package's import structure: no cycles, layers that import one way, no function-local
imports of the package's own modules without a stated reason (the usual way to hide a cycle).

Layers, lowest first (README's Layout section draws them): the private base modules
(rcl_kernels/_*.py) <- reference <- kernels (triton, cpu) <- ops <- nn <- integrations, models,
cli (with every command module, `*command.py`, wherever it lives). data and evaluation sit beside the op stack: they may use the base modules, and each other
only through the one annotations module they share.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "rcl_kernels"

# Package (first component below rcl_kernels) -> layer; a higher layer may import a lower one.
LAYERS = {
    "_base": 0,
    "reference": 1,
    "triton": 2,
    "cpu": 2,
    "ops": 3,
    "nn": 4,
    "data": 3,
    "evaluation": 3,
    "integrations": 5,
    "models": 6,
    "cli": 7,
    "__init__": 8,
}
# The module data and evaluation share; otherwise neither imports the other.
SHARED_BETWEEN_DATA_AND_EVALUATION = "rcl_kernels.data.annotations"
SIDE_PACKAGES = {"data", "evaluation"}
OP_STACK = {"reference", "triton", "cpu", "ops", "nn"}
# A function-local import is allowed only with this mark and its reason on the line (for example
# a command that imports its heavy implementation when run); the cycle check sees it regardless.
DEFERRED_MARK = "# deferred:"


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_deprecated_alias(tree: ast.Module) -> bool:
    doc = ast.get_docstring(tree) or ""
    return doc.startswith("Deprecated alias of")


def _imports(tree: ast.Module, module: str, is_package: bool, known: set[str]):
    """(imported rcl_kernels module, line, at module level?) for every import statement."""
    top_level = set()
    for node in tree.body:
        if isinstance(node, (ast.If, ast.Try)):  # guarded imports are still module level
            top_level.update(id(child) for child in ast.walk(node))
        top_level.add(id(node))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            # "from rcl_kernels.ops import soft_nms" names a module; "from x import func" names x
            names = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in known else prefix for a in node.names]
        else:
            continue
        for name in set(names):
            if name in known:
                yield name, node.lineno, id(node) in top_level


def _graph():
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        if _is_deprecated_alias(tree):
            continue
        modules[_module_name(path)] = (path, tree)
    edges, local_imports = {}, []
    for name, (path, tree) in modules.items():
        lines = path.read_text().splitlines()
        targets = set()
        for target, line, at_top in _imports(tree, name, path.name == "__init__.py", set(modules)):
            if target == name:
                continue
            if not at_top and DEFERRED_MARK not in lines[line - 1]:
                local_imports.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}")
            targets.add(target)
        edges[name] = targets
    return modules, edges, local_imports


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "__init__"
    if parts[-1] == "command" or parts[-1].endswith("_command"):
        return "cli"  # a command's module sits with the command line, above what it runs
    head = parts[1]
    return "_base" if head.startswith("_") else head


def test_no_function_local_imports_of_the_package():
    _, _, local_imports = _graph()
    assert not local_imports, (f"import these at module level, or say why not after {DEFERRED_MARK!r} on the line "
                               "(a local import can hide a cycle):\n" + "\n".join(local_imports))


def test_no_import_cycles():
    _, edges, _ = _graph()
    state, stack, cycles = {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_layers_import_one_way():
    _, edges, _ = _graph()
    wrong = []
    for source, targets in edges.items():
        src = _layer(source)
        for target in targets:
            dst = _layer(target)
            if src == dst:
                continue
            if {src, dst} <= SIDE_PACKAGES:
                if SHARED_BETWEEN_DATA_AND_EVALUATION not in (source, target):
                    wrong.append(f"{source} -> {target}: data and evaluation share only "
                                 f"{SHARED_BETWEEN_DATA_AND_EVALUATION}")
                continue
            if (src in SIDE_PACKAGES and dst in OP_STACK) or (src in OP_STACK and dst in SIDE_PACKAGES):
                wrong.append(f"{source} -> {target}: the op stack and data/evaluation are independent")
                continue
            if LAYERS[dst] >= LAYERS[src]:
                wrong.append(f"{source} ({src}) -> {target} ({dst}): imports upwards")
    assert not wrong, "\n".join(sorted(wrong))


@pytest.mark.parametrize("layer", sorted(set(LAYERS) - {"__init__", "_base", "cli"}))
def test_every_layer_exists(layer):
    # a renamed package must be renamed here too, or the checks above silently check nothing
    assert (PACKAGE / layer).is_dir()


ROOT = PACKAGE.parent
# Each public op, and the files its name must find (README's Layout section).
OPS = {
    "segment_interp": ["csrc/segment_interp.cpp", "csrc/cpu/segment_interp_cpu.cpp", "csrc/cuda/segment_interp_cuda.cu",
                       "rcl_kernels/triton/segment_interp.py"],
    "score_anchors": ["csrc/score_anchors.cpp", "csrc/cpu/score_anchors_cpu.cpp", "rcl_kernels/cpu/score_anchors.py",
                      "rcl_kernels/triton/score_anchors.py", "rcl_kernels/nn/score_anchors.py"],
    "soft_nms": ["csrc/soft_nms.cpp", "csrc/cpu/soft_nms_cpu.cpp", "csrc/cuda/soft_nms_cuda.cu"],
    "roi_align_1d": ["csrc/roi_align_1d.cpp", "csrc/cpu/roi_align_1d_cpu.cpp", "csrc/cuda/roi_align_1d_cuda.cu",
                     "rcl_kernels/triton/roi_align_1d.py"],
}


@pytest.mark.parametrize("op", sorted(OPS))
def test_an_ops_name_finds_its_whole_story(op):
    expected = [f"rcl_kernels/ops/{op}.py", f"rcl_kernels/reference/{op}.py", f"tests/test_{op}.py",
                f"benchmarks/bench_{op}.py", f"python/{op}_example.py", *OPS[op]]
    found = {str(p.relative_to(ROOT)) for p in ROOT.rglob(f"*{op}*") if "build" not in p.parts}
    assert not set(expected) - found, f"missing: {sorted(set(expected) - found)}"
    # the schema is in a file the name finds: csrc/<op>.cpp for a C++ op, a custom_op for Triton
    schema_files = [p for p in found if p.endswith(".cpp") or p.endswith(".py")]
    declared = [p for p in schema_files
                if f'm.def(\n      "{op}(' in (ROOT / p).read_text() or f'custom_op("rcl_kernels::{op}' in (ROOT / p).read_text()]
    assert declared, f"no schema of {op} in a file named after it"
    assert getattr(__import__("rcl_kernels"), op).__module__ == f"rcl_kernels.ops.{op}"
