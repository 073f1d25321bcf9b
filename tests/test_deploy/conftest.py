"""Tools the deploy checks run (installed by .ci/deploy-tools.sh) and the rendered Kubernetes manifests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from test_deploy.exprs import REPO

KUSTOMIZATIONS = ("deploy/k8s/base", "deploy/k8s/overlays/persistent-spool", "deploy/k8s/overlays/kafka-mtls")


def tool(name: str) -> str:
    """Path of a command-line tool: PATH, this interpreter's bin (pip tools), or Go's bin (go install)."""
    gobin = os.environ.get("GOBIN") or str(Path(os.environ.get("GOPATH", Path.home() / "go")) / "bin")
    for candidate in (shutil.which(name), Path(sys.executable).parent / name, Path(gobin) / name):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    pytest.fail(f"{name} is not installed: run `bash .ci/deploy-tools.sh`")


def run(args: list[str], timeout: float = 120, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def render(path: str) -> list[dict]:
    result = run([tool("kustomize"), "build", path])
    assert result.returncode == 0, f"kustomize build {path} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict]]:
    """kustomization dir → its rendered objects."""
    return {path: render(path) for path in KUSTOMIZATIONS}


@pytest.fixture(scope="session")
def base(rendered) -> list[dict]:
    return rendered["deploy/k8s/base"]


def by_kind(objects: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}
