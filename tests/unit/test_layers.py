"""Which package may import which, read from the source (no process started).

jobqueue/ only sends: it is the contract web and workers share, so it depends on none of them and
on no domain rule. domain/budget.py decides job priorities without knowing the broker; the two
agree on the steps because this test says so (neither imports the other)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT


def _imported_modules(path: Path) -> set[str]:
    """Every absolute module an `import` or `from ... import` names in the file, at any depth
    (an import inside a function counts: it ties the packages together as much as one at the top)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _imports_of(files: list[Path], packages: set[str]) -> dict[str, list[str]]:
    found = {
        str(path.relative_to(ROOT)): sorted(name for name in _imported_modules(path) if name.split(".")[0] in packages)
        for path in files
    }
    return {path: names for path, names in found.items() if names}


def test_jobqueue_imports_no_domain_web_or_workers():
    files = sorted((ROOT / "jobqueue").rglob("*.py"))
    assert files
    assert _imports_of(files, {"domain", "web", "workers"}) == {}


def test_the_budget_does_not_import_the_queue():
    assert _imports_of([ROOT / "domain" / "budget.py"], {"jobqueue", "celery", "kombu"}) == {}


def test_the_queue_keeps_a_list_for_every_priority_the_budget_gives():
    import jobqueue
    from domain import budget

    assert budget.PRIORITY_STEPS == jobqueue.PRIORITY_STEPS
    assert budget.queue_priority(10**9) == jobqueue.PRIORITY_STEPS[-1]
    assert len(jobqueue.job_queue_lists()) == len(budget.PRIORITY_STEPS)


def test_the_sdk_errors_module_imports_nothing_of_the_sdk():
    """errors.py is the SDK's leaf: _http.py, client.py and the command line import it, never the
    other way round (an import circle, even inside a function, made each half need the other)."""
    errors = ROOT / "clients" / "python" / "src" / "faceapi_client" / "errors.py"
    assert _imports_of([errors], {"faceapi_client"}) == {}


def test_the_engine_reads_no_settings_of_its_own():
    """The engine receives its settings (worker_process_init passes the worker app's): importing it
    imports neither the worker's Celery app nor its settings accessor, so there is no circle
    celery_app -> engine -> settings -> celery_app."""
    imported = _imported_modules(ROOT / "workers" / "engine.py")
    assert not {name for name in imported if name.startswith("workers.")}  # `from workers import quality` only


def _reads_the_apps_settings(path: Path) -> list[str]:
    """What in the file reads settings it was not handed: the worker's Celery app (and through it
    `conf.faceapi_settings`), or the process's settings (config.get_settings, load_settings)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module == "config":
            found += [alias.name for alias in node.names if alias.name in ("get_settings", "load_settings")]
        elif isinstance(node, ast.ImportFrom) and node.module in ("workers", "workers.celery_app"):
            found += [
                f"{node.module}.{alias.name}"
                for alias in node.names
                if node.module != "workers" or alias.name == "celery_app"
            ]
        elif isinstance(node, ast.Attribute) and node.attr == "faceapi_settings":
            found.append(node.attr)
    return found


def test_worker_code_below_the_tasks_receives_its_settings():
    """Only the worker's edges read its settings: the Celery app (built from them), the tasks (the
    entry points) and the process context they hand down (workers/context.py, built at the
    process's start). The pipeline, deliveries and gallery jobs take them as arguments."""
    edges = {"celery_app.py", "tasks.py", "context.py"}
    below = [path for path in sorted((ROOT / "workers").glob("*.py")) if path.name not in edges]
    assert below
    readers = {path.name: names for path in below if (names := _reads_the_apps_settings(path))}
    assert readers == {}
    assert _reads_the_apps_settings(ROOT / "workers" / "tasks.py")  # the rule sees a reader


def test_domain_code_receives_its_settings():
    """domain/ is handed its settings by the web's services and the worker's tasks; only the
    process's pools read them where they are built: the database engine and the Redis client."""
    edges = {"db.py", "notifications.py"}
    below = [path for path in sorted((ROOT / "domain").glob("*.py")) if path.name not in edges]
    readers = {path.name: names for path in below if (names := _reads_the_apps_settings(path))}
    assert readers == {}
    assert _reads_the_apps_settings(ROOT / "domain" / "db.py")  # the rule sees a reader
