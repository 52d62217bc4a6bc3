"""docs/DEPLOYMENT.md's Kubernetes steps, each checked against the files it names: the image tag
and registry the kustomizations rewrite, the Ingress host, the ClusterIssuer the Ingress names, the
secret files make-secrets.sh writes (in the folder it writes them to, redis_address included), and
the pgvector extension the first migration needs."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
DOC = ROOT / "docs" / "DEPLOYMENT.md"


def _steps() -> str:
    """The bash block of the Kubernetes section."""
    section = DOC.read_text().split("## Kubernetes", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


STEPS = _steps()


def _documents(path: Path) -> list[dict]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def _by_kind(path: Path, kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in _documents(path) if d["kind"] == kind}


def _commands() -> list[list[str]]:
    """Each command line of the steps (continuations joined, comments and heredoc bodies left out)."""
    text = re.sub(r"<<(\w+)\n.*?\n\1\n", "\n", STEPS, flags=re.S).replace("\\\n", " ")
    return [shlex.split(line, comments=True) for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_the_steps_are_valid_bash():
    subprocess.run(["bash", "-n"], input=STEPS, text=True, check=True)


def test_the_image_pushed_is_the_one_the_kustomizations_name():
    pushed = re.search(r'docker push "\$REGISTRY/faceapi:([^"]+)"', STEPS).group(1)
    sed = re.search(r'sed -i "s\|([^|]+)\|\$REGISTRY/faceapi\|" (.+)', STEPS)
    assert sed.group(1) == "registry.example.com/faceapi"
    rewritten = sed.group(2).split()
    assert sorted(rewritten) == ["deploy/kubernetes-gpu/kustomization.yaml", "deploy/kubernetes/kustomization.yaml"]
    images = {}
    for path in rewritten:
        for image in yaml.safe_load((ROOT / path).read_text())["images"]:
            assert image["newName"] == sed.group(1), path
            images[image["name"]] = image["newTag"]
    assert images["faceapi"] == pushed
    assert f'deploy/build-image.sh "$REGISTRY/faceapi:{pushed}"' in STEPS


def test_the_host_and_admin_edits_find_what_they_replace():
    ingress = (K8S / "ingress.yaml").read_text()
    host_sed = re.search(r'sed -i "s/([^/]+)/\$DOMAIN/g" (\S+)', STEPS)
    assert (ROOT / host_sed.group(2)) == K8S / "ingress.yaml"
    replaced = yaml.safe_load(ingress.replace(host_sed.group(1), "faces.test"))
    assert replaced["spec"]["tls"][0]["hosts"] == ["faces.test"]
    assert {rule["host"] for rule in replaced["spec"]["rules"]} == {"faces.test"}
    admin_sed = re.search(r'sed -i "s/([^/]+)/\$ADMIN_EMAIL/" (\S+)', STEPS)
    migrate = _by_kind(ROOT / admin_sed.group(2), "Job")["migrate"]
    env = {e["name"]: e.get("value") for e in migrate["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["ADMIN_EMAIL"] == admin_sed.group(1)


def test_the_cluster_issuer_is_the_one_the_ingress_names():
    body = re.search(r"<<ISSUER\n(.*?)\nISSUER\n", STEPS, re.S).group(1)
    issuer = yaml.safe_load(body.replace("$ADMIN_EMAIL", "ops@example.com"))
    ingress = _by_kind(K8S / "ingress.yaml", "Ingress")["faceapi"]
    assert issuer["kind"] == "ClusterIssuer"
    assert issuer["metadata"]["name"] == ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"]
    solver = issuer["spec"]["acme"]["solvers"][0]["http01"]["ingress"]
    assert solver["ingressClassName"] == ingress["spec"]["ingressClassName"]


@pytest.fixture(scope="module")
def written_secrets(tmp_path_factory) -> Path:
    """make-secrets.sh run as step 4 runs it, into a folder of its own."""
    folder = tmp_path_factory.mktemp("k8s") / "secrets-k8s"
    env = {**os.environ, "DB_HOST": "postgres.internal", "REDIS_HOST": "redis.internal", "MAIN_SECRETS": "/none"}
    subprocess.run(
        ["bash", str(ROOT / "deploy/compose/make-secrets.sh"), str(folder)], env=env, check=True, capture_output=True
    )
    return folder


def test_the_secrets_come_from_the_files_make_secrets_writes_in_its_folder(written_secrets):
    folder = re.search(r"make-secrets\.sh (\S+)", STEPS).group(1)
    examples = _by_kind(K8S / "secret.example.yaml", "Secret")
    created = [c for c in _commands() if c[:1] == ["(cd"] or "create" in c]
    assert created, "no kubectl create secret in the steps"
    for command in created:
        assert command[:3] == ["(cd", folder, "&&"], f"run in the folder make-secrets.sh writes to: {command}"
        name = command[command.index("generic") + 1]
        files = [word.split("=", 1)[1].rstrip(")") for word in command if word.startswith("--from-file=")]
        assert sorted(files) == sorted(examples[name]["stringData"]), name
        missing = [file for file in files if not (written_secrets / file).is_file()]
        assert not missing, f"make-secrets.sh does not write {missing}"
    assert {c[c.index("generic") + 1] for c in created} == set(examples)
    address = (written_secrets / "redis_address").read_text()
    assert address == "redis.internal:6379" and f"@{address}/" in (written_secrets / "redis_url").read_text()


def test_the_database_step_makes_the_extension_the_first_migration_needs():
    migration = (ROOT / "migrations/versions/0001_initial_schema.py").read_text()
    assert "CREATE EXTENSION IF NOT EXISTS vector" in migration  # a no-op once the admin made it
    assert 'psql "${ADMIN_URL%/*}/faceapi" -c "CREATE EXTENSION IF NOT EXISTS vector"' in STEPS
    assert "CREATE DATABASE faceapi OWNER faceapi" in STEPS
    database_url = re.search(r'"postgresql://faceapi:\$\{pg\}@\$\{DB_HOST\}:5432/(\w+)"', _make_secrets())
    assert database_url and database_url.group(1) == "faceapi"  # the role and database the URL names


def test_the_last_step_waits_for_the_job_and_namespace_the_manifests_have():
    assert "wait --for=condition=complete job/migrate" in STEPS
    assert "migrate" in _by_kind(K8S / "migrate-job.yaml", "Job")
    namespace = _by_kind(K8S / "namespace.yaml", "Namespace")
    assert set(namespace) == {"faceapi"} == {yaml.safe_load((K8S / "kustomization.yaml").read_text())["namespace"]}


def _make_secrets() -> str:
    return (ROOT / "deploy/compose/make-secrets.sh").read_text()
