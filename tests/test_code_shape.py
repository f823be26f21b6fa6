"""Code-shape rules of docs/design.md that a reviewer would otherwise check by hand."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 60


def long_functions(root: Path, limit: int = MAX_LINES) -> list:
    """Every function or method under ``root`` longer than ``limit`` lines (decorators excluded)."""
    out = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > limit:
                    out.append(f"{path.relative_to(root.parent)}:{node.lineno} {node.name} ({n} lines)")
    return out


def test_no_function_in_the_package_is_longer_than_60_lines():
    assert long_functions(ROOT / "fusedgan") == []


def test_the_checker_finds_a_long_function(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    (pkg / "m.py").write_text(f"def short():\n    return 1\n\n\ndef long():\n{body}\n")
    found = long_functions(pkg)
    assert len(found) == 1 and "long" in found[0] and f"({MAX_LINES + 1} lines)" in found[0]
