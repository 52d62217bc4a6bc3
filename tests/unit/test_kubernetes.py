"""The Kubernetes manifests under deploy/kubernetes, checked offline.

Built-in kinds are validated strictly against the API's OpenAPI schemas (PyPI
`kubernetes-validate`, which ships them: no cluster, no network); KEDA's ScaledObject and
TriggerAuthentication against the fields of KEDA's CRDs written down here. Then what no schema
knows: every container runs a role of the image with settings that config/__init__.py reads and
secrets that exist, probes hit routes the app serves, every selector and reference names
something that is there, the queue KEDA watches is Celery's, beat is single, and only the migrate
Job sees the admin's password.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.unit.test_deploy_files import config_env_names

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
GPU = ROOT / "deploy" / "kubernetes-gpu"  # beside the base: kustomize refuses an overlay inside it
BUILT_IN_GROUPS = ("v1", "apps/v1", "batch/v1", "autoscaling/v2", "policy/v1", "networking.k8s.io/v1")
IMAGES = {"faceapi", "faceapi-gpu"}  # the names kustomization.yaml's `images:` rewrite

# The fields of KEDA's CRDs (keda.sh/v1alpha1) that these manifests may use.
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
KEDA_SCHEMAS = {
    "ScaledObject": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"},
            "kind": {"const": "ScaledObject"},
            "metadata": {"type": "object", "required": ["name"]},
            "spec": {
                "type": "object",
                "required": ["scaleTargetRef", "triggers"],
                "additionalProperties": False,
                "properties": {
                    "scaleTargetRef": {
                        "type": "object",
                        "required": ["name"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string"},
                            "apiVersion": {"type": "string"},
                            "kind": {"type": "string"},
                            "envSourceContainerName": {"type": "string"},
                        },
                    },
                    "minReplicaCount": {"type": "integer", "minimum": 0},
                    "maxReplicaCount": {"type": "integer", "minimum": 1},
                    "idleReplicaCount": {"type": "integer", "minimum": 0},
                    "pollingInterval": {"type": "integer", "minimum": 1},
                    "cooldownPeriod": {"type": "integer", "minimum": 0},
                    "initialCooldownPeriod": {"type": "integer", "minimum": 0},
                    "fallback": {"type": "object"},
                    "advanced": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "restoreToOriginalReplicaCount": {"type": "boolean"},
                            "horizontalPodAutoscalerConfig": {"type": "object"},
                            "scalingModifiers": {
                                "type": "object",
                                "required": ["formula", "target"],
                                "additionalProperties": False,
                                "properties": {
                                    "formula": {"type": "string"},
                                    "target": {"type": "string"},
                                    "activationTarget": {"type": "string"},
                                    "metricType": {"enum": ["AverageValue", "Value"]},
                                },
                            },
                        },
                    },
                    "triggers": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["type", "metadata"],
                            "additionalProperties": False,
                            "properties": {
                                "type": {"type": "string"},
                                "name": {"type": "string"},
                                "metadata": _STRING_MAP,
                                "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                                "useCachedMetrics": {"type": "boolean"},
                                "authenticationRef": {
                                    "type": "object",
                                    "required": ["name"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "name": {"type": "string"},
                                        "kind": {"enum": ["TriggerAuthentication", "ClusterTriggerAuthentication"]},
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
    "TriggerAuthentication": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"},
            "kind": {"const": "TriggerAuthentication"},
            "metadata": {"type": "object", "required": ["name"]},
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "secretTargetRef": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["parameter", "name", "key"],
                            "additionalProperties": False,
                            "properties": {k: {"type": "string"} for k in ("parameter", "name", "key")},
                        },
                    },
                    "env": {"type": "array"},
                    "podIdentity": {"type": "object"},
                },
            },
        },
    },
}
# KEDA's redis (list) scaler: its metadata keys, and what TriggerAuthentication may supply.
REDIS_SCALER_METADATA = {
    "address",
    "addressFromEnv",
    "host",
    "hostFromEnv",
    "port",
    "portFromEnv",
    "usernameFromEnv",
    "passwordFromEnv",
    "listName",
    "listLength",
    "activationListLength",
    "databaseIndex",
    "enableTLS",
    "unsafeSsl",
}
REDIS_SCALER_AUTH = {"address", "host", "port", "username", "password", "tls", "ca", "cert", "key"}


# ---------------------------------------------------------------- loading


def documents(path: Path) -> list[dict]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def kustomization(directory: Path) -> dict:
    return yaml.safe_load((directory / "kustomization.yaml").read_text())


def rendered(directory: Path) -> list[dict]:
    """The resources `kubectl apply -k directory` would send (resources followed, images rewritten)."""
    config = kustomization(directory)
    resources: list[dict] = []
    for entry in config["resources"]:
        path = (directory / entry).resolve()
        resources += rendered(path) if path.is_dir() else documents(path)
    images = {image["name"]: f"{image['newName']}:{image['newTag']}" for image in config.get("images", [])}
    for resource in resources:
        for container in containers(resource):
            container["image"] = images.get(container["image"], container["image"])
    return resources


def pod_spec(resource: dict) -> dict | None:
    if resource["kind"] in ("Deployment", "Job"):
        return resource["spec"]["template"]["spec"]
    if resource["kind"] == "CronJob":
        return resource["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return None


def containers(resource: dict) -> list[dict]:
    spec = pod_spec(resource)
    return [*spec.get("initContainers", []), *spec["containers"]] if spec else []


def by_kind(resources: list[dict], kind: str) -> dict[str, dict]:
    return {resource["metadata"]["name"]: resource for resource in resources if resource["kind"] == kind}


def raw(directory: Path) -> list[dict]:
    """The manifests as written (images not yet rewritten)."""
    resources: list[dict] = []
    for entry in kustomization(directory)["resources"]:
        path = (directory / entry).resolve()
        resources += raw(path) if path.is_dir() else documents(path)
    return resources


ALL = raw(GPU)  # the GPU overlay includes the base
SECRETS = by_kind(documents(K8S / "secret.example.yaml"), "Secret")
CONFIGMAP = by_kind(ALL, "ConfigMap")["faceapi"]


# ---------------------------------------------------------------- structure and schemas


def test_kustomization_lists_every_manifest():
    for directory in (K8S, GPU):
        listed = {entry for entry in kustomization(directory)["resources"] if not entry.startswith("..")}
        present = {path.name for path in directory.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
        assert listed == present, directory
    assert kustomization(GPU)["resources"][0] == "../kubernetes"
    assert "secret.example.yaml" not in kustomization(K8S)["resources"], "never apply the example Secret"


@pytest.mark.parametrize(
    "path",
    sorted(
        p.relative_to(ROOT).as_posix()
        for directory in (K8S, GPU)
        for p in directory.rglob("*.yaml")
        if p.name != "kustomization.yaml"
    ),
)
def test_built_in_kinds_validate_strictly_against_the_api(path):
    version = kubernetes_validate.latest_version()
    for resource in documents(ROOT / path):
        if resource["apiVersion"] in BUILT_IN_GROUPS:
            kubernetes_validate.validate(resource, version, strict=True)
        else:
            schema = KEDA_SCHEMAS.get(resource["kind"])
            assert schema and resource["apiVersion"] == "keda.sh/v1alpha1", f"{path}: unknown kind {resource['kind']}"
            jsonschema.validate(resource, schema)


def test_a_typo_fails_strict_validation():
    """The validator is not a formality: an unknown field is refused."""
    deployment = by_kind(ALL, "Deployment")["web"]
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)


# ---------------------------------------------------------------- what the schemas cannot know


def test_every_container_runs_a_role_of_the_image_as_its_user():
    from stack.serve import ROLES

    for resource in ALL:
        spec = pod_spec(resource)
        if spec is None:
            continue
        name = resource["metadata"]["name"]
        security = spec["securityContext"]
        assert security["runAsNonRoot"] and security["runAsUser"] == 10001 and security["fsGroup"] == 10001, name
        assert spec.get("automountServiceAccountToken") is False, name
        for container in containers(resource):
            assert container["image"] in IMAGES, f"{name}: the image comes from kustomization.yaml's images"
            assert "command" not in container, f"{name}: keep the image's entrypoint (stack/serve.py)"
            role = container["args"][0]
            assert role in ROLES and (len(container["args"]) == 1 or role == "backup"), name
            assert container["securityContext"]["readOnlyRootFilesystem"] is True, name
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]) and {"memory"} <= set(resources["limits"]), name
            mounts = {mount["mountPath"] for mount in container.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{name}: a read-only root needs a writable /tmp"
            if role != "flower":
                assert "/var/lib/faceapi" in mounts, f"{name}: DATA_DIR must be writable"


def test_images_are_rewritten_to_the_registry():
    for resource in rendered(GPU):
        for container in containers(resource):
            assert container["image"].startswith("registry.example.com/faceapi:"), container["image"]


def test_settings_are_spelled_the_way_config_reads_them():
    known = config_env_names()
    names = set(CONFIGMAP["data"])
    for resource in ALL:
        for container in containers(resource):
            names |= {variable["name"] for variable in container.get("env", [])}
            assert [source["configMapRef"]["name"] for source in container["envFrom"]] == ["faceapi"]
    unknown = names - known
    assert not unknown, f"{sorted(unknown)} are not read by config/__init__.py"
    assert CONFIGMAP["data"]["FACEAPI_ENV"] == "production"
    assert CONFIGMAP["data"]["PROXY_HOPS"] == "1"  # behind the Ingress controller


def test_secret_settings_are_files_of_existing_secrets():
    secret_settings = {"DATABASE_URL", "REDIS_URL", "JWT_SECRET_KEY", "FLOWER_BASIC_AUTH", "METRICS_TOKEN"}
    assert not secret_settings & set(CONFIGMAP["data"]), "secret values in the ConfigMap"
    for resource in ALL:
        spec = pod_spec(resource)
        if spec is None:
            continue
        volumes = {volume["name"]: volume for volume in spec.get("volumes", [])}
        for container in containers(resource):
            env = dict(CONFIGMAP["data"]) | {v["name"]: v.get("value") for v in container.get("env", [])}
            mounts = {mount["mountPath"]: volumes[mount["name"]] for mount in container.get("volumeMounts", [])}
            for name, value in env.items():
                if not name.endswith("_FILE"):
                    continue
                directory, key = value.rsplit("/", 1)
                secret_name = mounts[directory]["secret"]["secretName"]
                assert key in SECRETS[secret_name]["stringData"], f"{name}: {secret_name} has no {key}"


def test_only_the_migrate_job_sees_the_admin_password():
    holders = set()
    for resource in ALL:
        spec = pod_spec(resource)
        if spec is None:
            continue
        secrets = {v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v}
        env = {v["name"] for c in containers(resource) for v in c.get("env", [])}
        if "faceapi-admin" in secrets or {"ADMIN_PASSWORD", "ADMIN_PASSWORD_FILE"} & env:
            holders.add((resource["kind"], resource["metadata"]["name"]))
    assert holders == {("Job", "migrate")}
    assert "admin_password" not in SECRETS["faceapi"]["stringData"]


def test_backups_run_nightly_onto_a_volume():
    cron = by_kind(ALL, "CronJob")["backup"]
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    (container,) = pod_spec(cron)["containers"]
    assert container["args"][:2] == ["backup", "/backups"]
    volumes = {v["name"]: v for v in pod_spec(cron)["volumes"]}
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/backups"]
    assert volumes[mount["name"]]["persistentVolumeClaim"]["claimName"] in by_kind(ALL, "PersistentVolumeClaim")


def test_web_probes_hit_the_routes_the_app_serves():
    source = (ROOT / "web" / "health.py").read_text()
    for route in ("/healthz", "/readyz"):
        assert f'@bp.get("{route}"' in source
    (web,) = by_kind(ALL, "Deployment")["web"]["spec"]["template"]["spec"]["containers"]
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert web["ports"][0]["containerPort"] == int(CONFIGMAP["data"]["PORT"])


def test_references_name_what_is_there():
    deployments = by_kind(ALL, "Deployment")
    pod_labels = {
        name: deployment["spec"]["template"]["metadata"]["labels"] for name, deployment in deployments.items()
    }

    def selects(selector: dict) -> list[str]:
        return [name for name, labels in pod_labels.items() if selector.items() <= labels.items()]

    for name, deployment in deployments.items():
        assert selects(deployment["spec"]["selector"]["matchLabels"]) == [name]
    for name, budget in by_kind(ALL, "PodDisruptionBudget").items():
        assert selects(budget["spec"]["selector"]["matchLabels"]) == [name], f"PodDisruptionBudget {name}"
    services = by_kind(ALL, "Service")
    for name, service in services.items():
        (target,) = selects(service["spec"]["selector"])
        container_ports = {p["name"] for c in containers(deployments[target]) for p in c.get("ports", [])}
        assert {port["targetPort"] for port in service["spec"]["ports"]} <= container_ports, name
    for autoscaler in by_kind(ALL, "HorizontalPodAutoscaler").values():
        assert autoscaler["spec"]["scaleTargetRef"]["name"] in deployments
    authentications = by_kind(ALL, "TriggerAuthentication")
    for scaled in by_kind(ALL, "ScaledObject").values():
        assert scaled["spec"]["scaleTargetRef"]["name"] in deployments
        for trigger in scaled["spec"]["triggers"]:
            assert trigger["authenticationRef"]["name"] in authentications
    for authentication in authentications.values():
        for reference in authentication["spec"]["secretTargetRef"]:
            assert reference["key"] in SECRETS[reference["name"]]["stringData"]
    for rule in by_kind(ALL, "Ingress")["faceapi"]["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["name"] in services
            assert backend["port"]["name"] in {p["name"] for p in services[backend["name"]]["spec"]["ports"]}


def test_each_deployment_is_scaled_by_one_thing_and_beat_by_none():
    deployments = by_kind(ALL, "Deployment")
    targets = [a["spec"]["scaleTargetRef"]["name"] for a in by_kind(ALL, "HorizontalPodAutoscaler").values()]
    targets += [s["spec"]["scaleTargetRef"]["name"] for s in by_kind(ALL, "ScaledObject").values()]
    assert sorted(targets) == sorted(set(targets)), "two autoscalers on one Deployment fight"
    assert {"web", "worker", "worker-gpu"} <= set(targets)
    beat = deployments["beat"]["spec"]
    assert "beat" not in targets and beat["replicas"] == 1 and beat["strategy"]["type"] == "Recreate"
    assert {"web", "worker"} <= set(by_kind(ALL, "PodDisruptionBudget"))


def test_workers_scale_on_the_sum_of_every_priority_list():
    # Celery keeps each priority step in a Redis list of its own: a busy organisation's jobs wait in
    # the lower lists, so scaling on `faceapi` alone would leave them without workers.
    from jobqueue import job_queue_lists

    for name in ("worker", "worker-gpu"):
        spec = by_kind(ALL, "ScaledObject")[name]["spec"]
        triggers = spec["triggers"]
        assert [t["metadata"]["listName"] for t in triggers] == job_queue_lists()
        for trigger in triggers:
            assert trigger["type"] == "redis"
            assert set(trigger["metadata"]) <= REDIS_SCALER_METADATA
            assert int(trigger["metadata"]["listLength"]) >= 1
        modifiers = spec["advanced"]["scalingModifiers"]
        assert sorted(modifiers["formula"].replace(" ", "").split("+")) == sorted(t["name"] for t in triggers)
        assert int(modifiers["target"]) >= 1 and modifiers["metricType"] == "AverageValue"
    for authentication in by_kind(ALL, "TriggerAuthentication").values():
        assert {r["parameter"] for r in authentication["spec"]["secretTargetRef"]} <= REDIS_SCALER_AUTH


def test_workers_finish_their_jobs_before_they_are_killed():
    from config import Settings

    for name in ("worker", "worker-gpu"):
        spec = by_kind(ALL, "Deployment")[name]["spec"]["template"]["spec"]
        assert spec["terminationGracePeriodSeconds"] > Settings().job_soft_time_limit
        (container,) = spec["containers"]
        # stack.probe checks worker@<hostname>, stack/serve.py's node name (test_deploy_files checks the rest)
        assert container["livenessProbe"]["exec"]["command"] == ["python", "-m", "stack.probe", "worker"]
    from stack.serve import WORKER_NODE

    assert WORKER_NODE == "worker@%h"


def test_gpu_variant():
    (container,) = by_kind(ALL, "Deployment")["worker-gpu"]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "faceapi-gpu"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    env = {v["name"]: v["value"] for v in container["env"]}
    assert env["ORT_PROVIDERS"].split(",")[0] == "CUDAExecutionProvider"
    assert "CPUExecutionProvider" in env["ORT_PROVIDERS"].split(",")
    assert "ORT_PACKAGE" in (ROOT / "Dockerfile").read_text()


def test_ingress_passes_on_whole_requests_only():
    """nginx reads a whole request (headers, then the body, spilling to disk) before web sees it, so
    slow clients never hold a gunicorn thread; its read timeouts are the controller's ConfigMap keys,
    which the manifest names for the operator (no annotation sets them)."""
    ingress = by_kind(ALL, "Ingress")["faceapi"]
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "on"
    assert re.fullmatch(r"\d+[km]", annotations["nginx.ingress.kubernetes.io/client-body-buffer-size"])
    text = (ROOT / "deploy" / "kubernetes" / "ingress.yaml").read_text()
    assert "client-header-timeout" in text and "client-body-timeout" in text


def test_ingress_lets_the_largest_request_through_and_hides_the_rest():
    from config import Settings

    ingress = by_kind(ALL, "Ingress")["faceapi"]
    size = ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert re.fullmatch(r"\d+m", size) and int(size[:-1]) * 1024 * 1024 > Settings().max_batch_bytes
    routed = [p for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    paths = {p["path"] for p in routed}
    assert "/api" in paths and not {"/metrics", "/readyz"} & paths
    # `/` only exactly (it points the way): as a prefix it would route everything, /metrics included.
    assert all(p["pathType"] == "Exact" for p in routed if p["path"] == "/")
    assert ingress["spec"]["tls"], "TLS at the Ingress"


# ---------------------------------------------------------------- rendered by kustomize itself


def kustomize_build(directory: Path) -> list[dict]:
    """`kubectl kustomize DIRECTORY` (offline): what `kubectl apply -k` sends, rendered by kustomize."""
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl is not installed (it renders the kustomization; the checks above read the files)")
    completed = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    if completed.returncode != 0 and "unknown command" in completed.stderr:
        pytest.skip(f"this kubectl has no kustomize: {completed.stderr.strip()[:200]}")
    assert completed.returncode == 0, completed.stderr
    return [document for document in yaml.safe_load_all(completed.stdout) if document]


def secret_references(resource: dict) -> set[tuple[str, str | None]]:
    """(Secret, key or None for the whole Secret) that a resource reads."""
    found: set[tuple[str, str | None]] = set()
    spec = pod_spec(resource)
    for volume in (spec or {}).get("volumes", []):
        if "secret" in volume:
            items = volume["secret"].get("items") or [{"key": None}]
            found |= {(volume["secret"]["secretName"], item["key"]) for item in items}
    for container in containers(resource):
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                found.add((source["secretRef"]["name"], None))
        for variable in container.get("env", []):
            reference = variable.get("valueFrom", {}).get("secretKeyRef")
            if reference:
                found.add((reference["name"], reference["key"]))
    if resource["kind"] == "TriggerAuthentication":
        found |= {(target["name"], target["key"]) for target in resource["spec"].get("secretTargetRef", [])}
    return found


@pytest.mark.parametrize("directory", [K8S, GPU], ids=["base", "gpu"])
def test_kustomize_renders_what_the_containers_read(directory):
    """The kustomization as kustomize renders it: the resources the checks above read, every image
    the registry's, every Secret and key that a pod or KEDA reads in secret.example.yaml (or the
    admin's), every ConfigMap key and env variable a setting config/__init__.py reads."""
    built = kustomize_build(directory)
    expected = {(resource["kind"], resource["metadata"]["name"]) for resource in rendered(directory)}
    assert {(resource["kind"], resource["metadata"]["name"]) for resource in built} == expected

    images = {f"{image['newName']}:{image['newTag']}" for image in kustomization(K8S)["images"]}
    images |= {f"{image['newName']}:{image['newTag']}" for image in kustomization(GPU)["images"]}
    config_maps = by_kind(built, "ConfigMap")
    known_settings = config_env_names()
    for resource in built:
        assert resource["kind"] == "Namespace" or resource["metadata"].get("namespace") == "faceapi", resource["kind"]
        for container in containers(resource):
            assert container["image"] in images, f"{resource['metadata']['name']}: {container['image']}"
            for source in container.get("envFrom", []):
                name = source.get("configMapRef", {}).get("name")
                if name:
                    unknown = set(config_maps[name]["data"]) - known_settings
                    assert not unknown, f"ConfigMap {name}: {sorted(unknown)} are not settings"
            unknown = {variable["name"] for variable in container.get("env", [])} - known_settings
            assert not unknown, f"{resource['metadata']['name']}: env {sorted(unknown)} are not settings"
        for secret_name, key in secret_references(resource):
            if secret_name == "faceapi-admin":
                assert key in (None, "admin_password"), key
                continue
            assert secret_name in SECRETS, f"{resource['metadata']['name']} reads a Secret {secret_name} never made"
            assert key is None or key in SECRETS[secret_name]["stringData"], f"{secret_name} has no key {key}"
