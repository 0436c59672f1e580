"""The Kubernetes manifests, validated without a cluster: the example overlay renders with
kustomize (kubectl's own), every built-in kind passes Kubernetes' schemas (kubernetes-validate,
offline), the RayCluster passes a schema of KubeRay's fields (raycluster-v1.schema.json) and
its pod templates Kubernetes' PodTemplateSpec, the security defaults hold on every pod, and the
commands and environment names are the compose file's."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
OVERLAY = ROOT / "deploy" / "kubernetes" / "overlays" / "example"
SCHEMA = Path(__file__).with_name("raycluster-v1.schema.json")
KUBERNETES = "1.32.0"  # the API version the manifests are checked against


@pytest.fixture(scope="module")
def rendered() -> list[dict]:
    if shutil.which("kubectl") is None:
        pytest.skip("needs kubectl (its built-in kustomize renders the overlay)")
    done = subprocess.run(
        ["kubectl", "kustomize", str(OVERLAY)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def _pod_specs(resources: list[dict]) -> dict[str, dict]:
    """Every pod spec the manifests make, by where it is."""
    pods = {}
    for resource in resources:
        name = f"{resource['kind']}/{resource['metadata']['name']}"
        spec = resource.get("spec", {})
        if resource["kind"] in ("Deployment", "Job"):
            pods[name] = spec["template"]["spec"]
        if resource["kind"] == "RayCluster":
            pods[f"{name}/head"] = spec["headGroupSpec"]["template"]["spec"]
            for group in spec.get("workerGroupSpecs", []):
                pods[f"{name}/{group['groupName']}"] = group["template"]["spec"]
    return pods


def test_the_overlay_renders_every_piece(rendered):
    kinds = sorted(f"{r['kind']}/{r['metadata']['name']}" for r in rendered)
    assert kinds == [
        "ConfigMap/memtune-config",
        "Deployment/memtune-api",
        "Deployment/memtune-worker",
        "Job/memtune-migrate",
        "Namespace/memtune",
        "RayCluster/memtune-ray",
        "Secret/memtune-secrets",
        "Secret/memtune-storage-credentials",
        "Service/memtune-api",
        "ServiceAccount/memtune",
    ]
    assert all(
        r["metadata"].get("namespace") == "memtune" for r in rendered if r["kind"] != "Namespace"
    )


def test_every_built_in_kind_passes_kubernetes_schemas(rendered):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for resource in rendered:
        if resource["kind"] == "RayCluster":
            continue
        kubernetes_validate.validate(resource, KUBERNETES, strict=True)  # raises on an error


def test_the_raycluster_passes_kuberays_fields_and_its_pods_kubernetes_own(rendered):
    import jsonschema

    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    (cluster,) = [r for r in rendered if r["kind"] == "RayCluster"]
    jsonschema.validate(cluster, json.loads(SCHEMA.read_text()))
    templates = [cluster["spec"]["headGroupSpec"]["template"]]
    templates += [group["template"] for group in cluster["spec"]["workerGroupSpecs"]]
    for template in templates:
        pod_template = {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": "check"},
            "template": template,
        }
        kubernetes_validate.validate(pod_template, KUBERNETES, strict=True)
    # The schema is strict: a field KubeRay does not have is refused.
    broken = json.loads(json.dumps(cluster))
    broken["spec"]["workerGroupSpecs"][0]["maxReplica"] = 3
    with pytest.raises(jsonschema.ValidationError, match="maxReplica"):
        jsonschema.validate(broken, json.loads(SCHEMA.read_text()))
    broken = json.loads(json.dumps(cluster))
    broken["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0  # not a string
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, json.loads(SCHEMA.read_text()))


def test_the_gpu_workers_are_a_spot_pool_with_gpu_limits_and_opt_in_autoscaling(rendered):
    (cluster,) = [r for r in rendered if r["kind"] == "RayCluster"]
    (gpu,) = cluster["spec"]["workerGroupSpecs"]
    container = gpu["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert gpu["template"]["spec"]["nodeSelector"]["cloud.google.com/gke-spot"] == "true"
    assert {t["key"] for t in gpu["template"]["spec"]["tolerations"]} >= {
        "nvidia.com/gpu",
        "cloud.google.com/gke-spot",
    }
    assert (gpu["minReplicas"], gpu["maxReplicas"]) == (0, 8)
    # The node's shutdown notice reaches the trials (only PID 1 gets the pod's SIGTERM).
    assert container["lifecycle"]["preStop"]["exec"]["command"][:2] == ["memtune", "drain-node"]
    assert gpu["template"]["spec"]["terminationGracePeriodSeconds"] > 25
    assert cluster["spec"]["enableInTreeAutoscaling"] is True  # the overlay opts in
    base = yaml.safe_load((ROOT / "deploy/kubernetes/base/raycluster.yaml").read_text())
    assert base["spec"]["enableInTreeAutoscaling"] is False  # the base does not
    head = cluster["spec"]["headGroupSpec"]["rayStartParams"]
    assert head["include-dashboard"] == "false" and head["num-cpus"] == "0"


def test_every_pod_runs_locked_down(rendered):
    for where, pod in _pod_specs(rendered).items():
        assert pod["automountServiceAccountToken"] is False, where
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        mounts = set()
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            mounts |= {m["mountPath"] for m in container.get("volumeMounts", [])}
        assert {"/tmp", "/cache"} <= mounts, where  # writable: temp files, compile caches
        if where.startswith("RayCluster"):
            assert "/dev/shm" in mounts, where  # Ray's object store
    secrets = [r for r in rendered if r["kind"] == "Secret"]
    used = {
        ref["secretKeyRef"]["name"]
        for pod in _pod_specs(rendered).values()
        for container in pod["containers"]
        for env in container.get("env", [])
        if (ref := env.get("valueFrom"))
    }
    assert used <= {s["metadata"]["name"] for s in secrets}
    services = [r for r in rendered if r["kind"] == "Service"]
    assert all(8265 not in {p["port"] for p in s["spec"]["ports"]} for s in services)


def test_commands_and_environment_names_are_the_compose_files(rendered):
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    workloads = {r["metadata"]["name"]: r for r in rendered if r["kind"] in ("Deployment", "Job")}

    def container(name: str) -> dict:
        return workloads[name]["spec"]["template"]["spec"]["containers"][0]

    assert container("memtune-api")["command"] == services["api"]["command"]
    assert container("memtune-worker")["command"] == services["worker"]["command"]
    assert container("memtune-migrate")["command"] == ["memtune", "migrate"]
    config = next(r for r in rendered if r["kind"] == "ConfigMap")["data"]
    secrets = {
        key
        for r in rendered
        if r["kind"] == "Secret" and r["metadata"]["name"] == "memtune-secrets"
        for key in r["data"]
    }
    kubernetes_names = set(config) | secrets
    compose_names = set(services["worker"]["environment"])
    assert compose_names <= kubernetes_names, compose_names - kubernetes_names
    # Each variable is one memtune reads (Settings, the Ray and storage conventions).
    from memtune.service.config import Settings

    known = {f"MEMTUNE_{name.upper()}" for name in Settings.model_fields} | {"DATABASE_URL"}
    known |= {
        "RAY_ADDRESS",
        "RAY_AUTH_MODE",
        "RAY_AUTH_TOKEN",
        "XDG_CACHE_HOME",
        "XDG_DATA_HOME",
        "HOME",
    }
    assert kubernetes_names <= known, kubernetes_names - known
