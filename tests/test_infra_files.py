"""infra/docker-compose.yml and infra/k8s/ parse and carry what a team stack needs."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

INFRA = Path(__file__).resolve().parents[1] / "infra"


def _compose() -> dict:
    return yaml.safe_load((INFRA / "docker-compose.yml").read_text())


def _k8s() -> list[dict]:
    return [
        doc
        for path in sorted((INFRA / "k8s").glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def _worker_with_gpu_reservation() -> dict:
    """The compose file's worker service once its GPU reservation is uncommented, as README
    ("Running for a team") tells whoever runs workers on GPUs to do: the block's ``# `` removed."""
    lines = (INFRA / "docker-compose.yml").read_text().splitlines()
    start = next((i for i, line in enumerate(lines) if re.fullmatch(r" *# deploy: *", line)), None)
    assert start is not None, "infra/docker-compose.yml has no commented `# deploy:` GPU reservation"
    comment = lines[start].index("#")
    end = start + 1
    while end < len(lines) and lines[end].startswith(" " * comment + "#   "):  # deeper than deploy:
        end += 1
    uncommented = [line[:comment] + line[comment + 2 :] for line in lines[start:end]]
    return yaml.safe_load("\n".join(lines[:start] + uncommented + lines[end:]))["services"]["worker"]


def test_compose_services_are_pinned_healthy_and_secret_free():
    compose = _compose()
    services = compose["services"]
    assert {"postgres", "seaweedfs", "create-bucket", "mlflow", "worker", "optuna-dashboard"} <= set(services)
    for name, service in services.items():
        image = service["image"]
        assert re.search(r":[\w.\-]+$", image) and not image.endswith(":latest"), (name, image)
    for name in ("postgres", "seaweedfs", "mlflow"):
        assert services[name]["healthcheck"]["test"], name
    assert services["create-bucket"]["depends_on"]["seaweedfs"]["condition"] == "service_healthy"
    server = " ".join(services["mlflow"]["command"])
    assert "--app-name basic-auth" in server and "--allowed-hosts" in server
    env = services["mlflow"]["environment"]
    assert env["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql://")
    assert env["MLFLOW_ARTIFACTS_DESTINATION"].startswith("s3://")
    assert services["worker"]["command"][:2] == ["leukml", "search"]
    assert "OPTUNA_STORAGE" in services["worker"]["environment"]
    text = (INFRA / "docker-compose.yml").read_text()
    assert "deploy" not in services["worker"]  # the GPU reservation is commented out: CPU hosts work
    # Secrets come from .env (ignored by git), never from the file itself.
    assert not re.search(r"PASSWORD: (?!\$\{)", text) and "password1234" not in text
    assert (INFRA / ".env.example").is_file()
    ignored = subprocess.run(["git", "check-ignore", "-q", str(INFRA / ".env")], cwd=INFRA, timeout=60)
    assert ignored.returncode == 0, "infra/.env must be ignored by git"


def test_compose_gpu_reservation_uncomments_into_one_gpu_per_worker():
    gpu_worker = _worker_with_gpu_reservation()
    assert gpu_worker["deploy"] == {
        "resources": {
            "reservations": {"devices": [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]}
        }
    }
    # Uncommenting adds the reservation and changes nothing else of the worker.
    assert {k: v for k, v in gpu_worker.items() if k != "deploy"} == _compose()["services"]["worker"]


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker client")
def test_docker_compose_config_accepts_it(tmp_path):
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=60)
    if probe.returncode != 0:
        pytest.skip("docker client without the compose plugin")
    env_file = tmp_path / ".env"
    env_file.write_text((INFRA / ".env.example").read_text())
    done = subprocess.run(
        [
            "docker",
            "compose",
            "-f",
            str(INFRA / "docker-compose.yml"),
            "--env-file",
            str(env_file),
            "config",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def test_k8s_manifests_have_the_team_pieces():
    docs = _k8s()
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert {
        ("Deployment", "mlflow"),
        ("Service", "mlflow"),
        ("Secret", "leukml"),
        ("Job", "leukml-search"),
    } <= kinds
    [server] = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "mlflow"]
    pod = server["spec"]["template"]["spec"]
    assert "pg_isready" in " ".join(pod["initContainers"][0]["command"])
    assert "--app-name basic-auth" in pod["containers"][0]["command"][-1]

    [job] = [d for d in docs if d["kind"] == "Job" and d["metadata"]["name"] == "leukml-search"]
    assert job["spec"]["parallelism"] >= 2
    worker_pod = job["spec"]["template"]["spec"]
    assert "pg_isready" in " ".join(worker_pod["initContainers"][0]["command"])
    [worker] = worker_pod["containers"]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert worker["command"][:2] == ["leukml", "search"]
    env = {e["name"] for e in worker["env"]}
    assert {
        "MLFLOW_TRACKING_URI",
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
        "OPTUNA_STORAGE",
    } <= env
    images = [
        c["image"]
        for d in docs
        if d["kind"] in ("Deployment", "StatefulSet", "Job")
        for c in d["spec"]["template"]["spec"]["containers"]
    ]
    assert all(re.search(r":[\w.\-]+$", i) and not i.endswith(":latest") for i in images), images


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="no kubectl")
def test_kustomize_renders_the_stack():
    done = subprocess.run(
        ["kubectl", "kustomize", str(INFRA / "k8s")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    kinds = [doc["kind"] for doc in yaml.safe_load_all(done.stdout) if doc]
    assert kinds.count("Deployment") == 2 and "StatefulSet" in kinds and "Job" in kinds


def test_compose_app_serves_the_page_behind_a_token_on_loopback():
    app = _compose()["services"]["app"]
    assert app["command"][:2] == ["leukml", "app"] and app["profiles"] == ["app"]
    assert "LEUKML_APP_TOKEN" in app["environment"]  # it binds 0.0.0.0 in the container: a token
    assert all(port.startswith("127.0.0.1:") for port in app["ports"])
