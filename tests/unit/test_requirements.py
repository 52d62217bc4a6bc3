"""The three requirement sets: every package imported anywhere is declared, pinned, in the right set.

- requirements.txt: the runtime, what the image installs and `make run` needs;
- requirements-bench.txt: the benchmarks (-r the runtime);
- requirements-dev.txt: the tests and tools (-r the runtime and the benchmarks); projects of this
  repository that the tests import are installed from their directory (`-e ./clients/python`).

Imports are read from the source with `ast` (inside functions too), mapped to distributions by
the installed metadata, and each must be declared in the set its code runs with. The Makefile's
stamps must be remade when any file their set reads changes.
"""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCAL_PACKAGES = {"config", "domain", "jobqueue", "web", "workers", "stack", "bench", "tests", "migrations"}
# Which code runs with which set.
RUNTIME_CODE = ["config", "domain", "jobqueue", "web", "workers", "stack", "migrations", "gunicorn.conf.py"]
SETS = {
    "requirements.txt": RUNTIME_CODE,
    "requirements-bench.txt": ["bench"],
    "requirements-dev.txt": ["tests"],
}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_lines(path: Path, seen: set[Path] | None = None) -> list[tuple[Path, str]]:
    """(file, requirement) pairs of a file and the files it includes with -r."""
    seen = seen if seen is not None else set()
    if path in seen:
        return []
    seen.add(path)
    lines: list[tuple[Path, str]] = []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-r "):
            lines += requirement_lines(path.parent / line[3:].strip(), seen)
            continue
        lines.append((path, line))
    return lines


def local_project(line: str, base: Path) -> str | None:
    """The name of a project of this repository a line installs (`-e ./clients/python`), or None."""
    target = line.removeprefix("-e").strip()
    if not target.startswith("./"):
        return None
    pyproject = (base / target / "pyproject.toml").read_text()
    return re.search(r'^name\s*=\s*"([^"]+)"', pyproject, flags=re.M).group(1)


def declared(path: Path) -> dict[str, str]:
    """{canonical name: pinned version} of a set, includes followed; a project of this repository
    installed from its directory has the version "local"."""
    pins = {}
    for file, line in requirement_lines(path):
        project = local_project(line, file.parent)
        if project:
            pins[canonical(project)] = "local"
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)(\[[^\]]+\])?==([^\s;]+)", line)
        assert match, f"{path.name}: `{line}` is not pinned with =="
        pins[canonical(match.group(1))] = match.group(3)
    return pins


def imported_modules(target: str) -> dict[str, str]:
    """{top-level module: a file importing it} for third-party imports under `target`."""
    path = ROOT / target
    files = [path] if path.is_file() else sorted(path.rglob("*.py"))
    found: dict[str, str] = {}
    for file in files:
        tree = ast.parse(file.read_text(), filename=str(file))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in LOCAL_PACKAGES or top == "__future__":
                    continue
                found.setdefault(top, str(file.relative_to(ROOT)))
    return found


@pytest.mark.parametrize("requirements", sorted(SETS))
def test_every_import_is_declared_in_the_set_its_code_runs_with(requirements):
    distributions = metadata.packages_distributions()
    pins = declared(ROOT / requirements)
    missing = []
    for target in SETS[requirements]:
        for module, where in sorted(imported_modules(target).items()):
            candidates = {canonical(name) for name in distributions.get(module, [])}
            assert candidates, f"{where} imports {module}, which no installed distribution provides"
            if not candidates & set(pins):
                missing.append(f"{module} ({where}; one of {sorted(candidates)})")
    assert not missing, f"{requirements} does not declare: {missing}"


def test_the_image_installs_only_the_runtime():
    runtime = declared(ROOT / "requirements.txt")
    for tool in ("pytest", "ruff", "hypothesis", "schemathesis", "matplotlib", "py-spy", "kubernetes-validate"):
        assert tool not in runtime, f"{tool} is not a runtime dependency"


@pytest.mark.parametrize("requirements", sorted(SETS))
def test_pins_agree_across_sets_and_with_the_environment(requirements):
    """One version per package across the files, and the one installed (`make test` installs them)."""
    versions: dict[str, set[str]] = {}
    for path in sorted(ROOT.glob("requirements*.txt")):
        for name, version in declared(path).items():
            versions.setdefault(name, set()).add(version)
    assert {name: v for name, v in versions.items() if len(v) > 1} == {}
    for name, version in declared(ROOT / requirements).items():
        if version == "local":
            continue
        assert metadata.version(name) == version, f"{name}: pinned {version}, installed {metadata.version(name)}"


def test_dev_and_bench_include_the_runtime():
    for name in ("requirements-dev.txt", "requirements-bench.txt"):
        included = {file.name for file, _ in requirement_lines(ROOT / name)}
        assert "requirements.txt" in included, f"{name} must include the runtime with -r"


def test_make_stamps_notice_a_change_to_any_file_they_read():
    makefile = (ROOT / "Makefile").read_text()
    variables = dict(re.findall(r"^(\w+)\s*:?=\s*(\S+)\s*$", makefile, flags=re.M))
    rules = {}
    for target, prerequisites in re.findall(r"^(\$\(\w+\)):([^|\n]*)", makefile, flags=re.M):
        rules[target] = prerequisites.split()
    for stamp, requirements in (("RUNTIME_STAMP", "requirements.txt"), ("DEV_STAMP", "requirements-dev.txt")):
        assert stamp in variables, f"the Makefile has no {stamp}"
        reads = {file.name for file, _ in requirement_lines(ROOT / requirements)} | {requirements}
        assert set(rules[f"$({stamp})"]) >= reads, f"{stamp} is not remade when {sorted(reads)} change"
    assert re.search(r"^test: install-dev\b", makefile, flags=re.M)
    assert re.search(r"^run: install\b", makefile, flags=re.M) and re.search(
        r"^install: \$\(RUNTIME_STAMP\)", makefile, flags=re.M
    )
