"""Container and cluster descriptors under deploy/: linted with hadolint, yamllint, the Compose
specification's schema and Kubernetes' own API schemas (kubernetes-validate), and read back with
dockerfile-parse and burnscope's settings loader. No container is built here (no Docker engine)."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from fixtures import REPO

DEPLOY = REPO / "deploy"
DOCKERFILES = sorted((DEPLOY / "docker").glob("Dockerfile.*[!e]"))  # not the .dockerignore files
SERVE = ["serve", "burn-triage", "-o", "/data/out", "--listen", "11112", "--metrics-port", "9090"]
K8S = ["configmap.yaml", "secret.yaml", "pvc.yaml", "deployment.yaml", "service.yaml"]


def _tool(name: str) -> str:
    path = shutil.which(name) or str(Path(sys.executable).with_name(name))
    assert Path(path).exists(), f"{name} not installed (pip install -e '.[test]')"
    return path


def _stages(path: Path):
    from dockerfile_parse import DockerfileParser

    with path.open("rb") as handle:
        parser = DockerfileParser(fileobj=handle)
        return parser.structure


def test_both_dockerfiles_exist():
    assert [p.name for p in DOCKERFILES] == ["Dockerfile.cpu", "Dockerfile.dgpu"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_is_clean(dockerfile):
    result = subprocess.run([_tool("hadolint"), "--no-color", "--failure-threshold", "info", str(dockerfile)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_is_multi_stage_non_root_with_healthcheck_and_serve(dockerfile):
    structure = _stages(dockerfile)
    by = lambda name: [s["value"] for s in structure if s["instruction"] == name]  # noqa: E731
    froms = by("FROM")
    assert len(froms) >= 4 and froms[-1].endswith("AS runtime")  # build, model stages, runtime
    runtime = max(i for i, s in enumerate(structure) if s["instruction"] == "FROM")
    tail = structure[runtime:]
    users = [s["value"] for s in tail if s["instruction"] == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    (health,) = [s["value"] for s in tail if s["instruction"] == "HEALTHCHECK"]
    assert "http://127.0.0.1:9090/healthz" in health
    (cmd,) = [s["value"] for s in tail if s["instruction"] == "CMD"]
    (entry,) = [s["value"] for s in tail if s["instruction"] == "ENTRYPOINT"]
    assert yaml.safe_load(entry) == ["burnscope"] and yaml.safe_load(cmd) == SERVE
    assert any("MODEL=mounted" in v for v in by("ARG")) and any("modeldir" in v for v in by("COPY"))
    for copy in by("COPY"):
        if "--from" not in copy:  # sources from the build context exist in the repository
            for source in shlex.split(copy)[:-1]:
                assert (REPO / source).exists(), source
    base = froms[-1].split()[0]
    args = {v.split("=", 1)[0]: v.split("=", 1)[1] for v in by("ARG") if "=" in v}
    image = args.get(base.strip("${}"), base)
    assert image.startswith("nvcr.io/nvidia/" if dockerfile.name.endswith("dgpu") else "python:3.11-slim")


def test_yamllint_is_clean():
    result = subprocess.run([_tool("yamllint"), "-c", str(DEPLOY / ".yamllint.yaml"), "-f", "parsable", str(DEPLOY)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file_matches_the_compose_specification():
    result = subprocess.run([_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
                             str(DEPLOY / "compose" / "compose.yaml")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
    assert set(compose["services"]) == {"burnscope", "orthanc"}
    service = compose["services"]["burnscope"]
    assert service["command"][: len(SERVE)] == SERVE and service["build"]["dockerfile"] == "deploy/docker/Dockerfile.cpu"
    assert all(p.startswith("127.0.0.1:") for s in compose["services"].values() for p in s["ports"])
    assert "/healthz" in " ".join(service["healthcheck"]["test"])


def test_kubernetes_manifests_validate_against_the_kubernetes_api_schemas():
    import kubernetes_validate

    kinds = {}
    for name in K8S:
        for doc in yaml.safe_load_all((DEPLOY / "kubernetes" / name).read_text()):
            kubernetes_validate.validate(doc, "1.30.0", strict=True)  # raises on any schema error
            kinds.setdefault(doc["kind"], []).append(doc)
    assert set(kinds) == {"ConfigMap", "Secret", "PersistentVolumeClaim", "Deployment", "Service"}
    kustomization = yaml.safe_load((DEPLOY / "kubernetes" / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(K8S)
    pod = kinds["Deployment"][0]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"][: len(SERVE)] == SERVE
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # /readyz needs the metrics token (metrics.token_env, from the Secret): an exec probe sends it
    probe = "\n".join(container["readinessProbe"]["exec"]["command"])
    assert "/readyz" in probe and "BURNSCOPE_METRICS_TOKEN" in probe and "Bearer" in probe
    assert "BURNSCOPE_METRICS_TOKEN" in yaml.safe_load((DEPLOY / "kubernetes" / "secret.yaml").read_text())["stringData"]
    assert pod["securityContext"]["runAsNonRoot"] is True and container["securityContext"]["readOnlyRootFilesystem"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts["data"] == "/data" and volumes["data"]["persistentVolumeClaim"]["claimName"] == "burnscope-data"
    assert volumes["config"]["configMap"]["name"] == "burnscope-config" and mounts["config"] == "/etc/burnscope"
    assert container["envFrom"][0]["secretRef"]["name"] == "burnscope-credentials"


def test_the_shipped_configs_are_valid_burn_triage_settings(tmp_path):
    from burnscope.applications.burn_triage.settings import load_settings

    configmap = yaml.safe_load((DEPLOY / "kubernetes" / "configmap.yaml").read_text())
    (tmp_path / "config.yaml").write_text(configmap["data"]["config.yaml"])
    for path in (tmp_path / "config.yaml", DEPLOY / "config" / "burn-triage.yaml"):
        settings = load_settings(path)
        assert settings["source"]["kind"] == "scp" and settings["source"]["scp"]["port"] == 11112
        assert settings["delivery"]["outbox"].startswith("/data/") and settings["source"]["scp"]["spool_dir"] == "/data/spool"
