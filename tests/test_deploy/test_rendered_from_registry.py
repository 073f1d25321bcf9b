"""deploy/ derives from the processor registry: the checked-in files are what `hookstream deploy render` writes,
and a processor registered by another distribution appears everywhere a built-in one does."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from fixtures.plugins import env_with, hookstream, install_refunds
from hookstream import manifests
from hookstream.processors.registry import load_all, registered
from test_deploy.exprs import DASHBOARD, REPO


def test_the_checked_in_deploy_files_are_what_the_registry_renders():
    result = hookstream(["deploy", "render", "--check", "--root", str(REPO)], env_with())
    assert result.returncode == 0, result.stdout + result.stderr
    assert manifests.stale(REPO, load_all()) == []


def _copy_of_deploy(tmp_path: Path) -> Path:
    root = tmp_path / "checkout"
    shutil.copytree(REPO / "deploy", root / "deploy", ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_a_registered_processor_appears_in_every_rendered_file_and_check_says_which_are_stale(tmp_path):
    plugin = install_refunds(tmp_path / "site")
    env = env_with(plugin)
    root = _copy_of_deploy(tmp_path)

    stale = hookstream(["deploy", "render", "--check", "--root", str(root)], env)
    assert stale.returncode == 1
    assert "out of date with the processor registry" in stale.stderr
    for path in manifests.render(root, load_all()):
        assert str(path) in stale.stderr

    written = hookstream(["deploy", "render", "--root", str(root)], env)
    assert written.returncode == 0, written.stderr
    assert hookstream(["deploy", "render", "--check", "--root", str(root)], env).returncode == 0

    names = {*registered(), "refunds"}
    deployments = {d["metadata"]["name"]: d for d in yaml.safe_load_all((root / manifests.K8S_PROCESSORS).read_text())}
    assert set(deployments) == {f"hookstream-processor-{n}" for n in names}
    (container,) = deployments["hookstream-processor-refunds"]["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["process", "refunds"]
    assert "HOOKSTREAM_API_KEY" not in {e["name"] for e in container["env"]}  # Refunds does not override needs_api
    scalers = {d["metadata"]["name"]: d for d in yaml.safe_load_all((root / manifests.K8S_SCALERS).read_text())}
    (trigger,) = scalers["hookstream-processor-refunds"]["spec"]["triggers"]
    assert trigger["metadata"]["consumerGroup"] == "hookstream.refunds"
    assert trigger["metadata"]["topic"] == "cryptomate.unrouted"
    prometheus = yaml.safe_load((root / manifests.PROMETHEUS_CONFIG).read_text())
    (job,) = [j for j in prometheus["scrape_configs"] if j["job_name"] == "hookstream-processor"]
    assert {c["labels"]["processor"]: c["targets"] for c in job["static_configs"]} == {
        n: [f"processor-{n}:9100"] for n in names}
    services = yaml.safe_load((root / manifests.COMPOSE).read_text())["services"]
    assert services["processor-refunds"]["command"] == ["process", "refunds"]
    assert {s for s in services if s.startswith("processor-")} == {f"processor-{n}" for n in names}
    assert "services" in yaml.safe_load((REPO / manifests.COMPOSE).read_text())  # the repository is untouched


def test_only_processors_that_override_needs_api_get_the_api_key():
    processors = load_all()
    deployments = {d["metadata"]["name"]: d for d in yaml.safe_load_all(manifests.processors_yaml(processors))}
    for name, cls in processors.items():
        (container,) = deployments[f"hookstream-processor-{name}"]["spec"]["template"]["spec"]["containers"]
        has_key = "HOOKSTREAM_API_KEY" in {e["name"] for e in container["env"]}
        assert has_key == manifests.calls_api(cls), name
    assert {n for n, c in processors.items() if manifests.calls_api(c)} == {"three-ds", "deposits", "card-status"}


def test_the_dashboard_names_no_processor_and_repeats_its_processor_row_over_the_metric_label():
    text = DASHBOARD.read_text()
    for name in registered():
        assert f'"{name}"' not in text and f"={name}" not in text and f'\\"{name}\\"' not in text, name
    (var,) = [v for v in json.loads(text)["templating"]["list"] if v["name"] == "processor"]
    assert var["query"]["query"] == "label_values(hookstream_processed_total, processor)"
