"""deploy/k8s renders with kustomize and every object is valid for Kubernetes and KEDA, and wired right."""

from __future__ import annotations

import copy
import re

import click
import jsonschema
import kubernetes_validate
import pytest
import yaml

from test_deploy.conftest import KUSTOMIZATIONS, by_kind
from test_deploy.exprs import PROCESSORS, REPO
from hookstream.cli import main
from hookstream.schemas import routing
from hookstream.settings import Settings

# Oldest Kubernetes we promise to run on (PDB policy/v1, HPA autoscaling/v2, StatefulSet PVC retention GA)
# and the newest schemas kubernetes-validate ships.
K8S_VERSIONS = ("1.30.0", kubernetes_validate.utils.latest_version())
KEDA_CRD = REPO / "deploy/k8s/schemas/keda.sh_scaledobjects.yaml"
PROCESSOR_TOPICS = {
    "cards": routing.CARDS_TRANSACTIONS,
    "three-ds": routing.CARDS_3DS,
    "deposits": routing.DEPOSITS,
    "treasury": routing.TREASURY,
    "card-status": routing.CARDS_STATUS,
}
DOCKER_UID = 10001


def _strict(schema: dict) -> dict:
    """An OpenAPI schema that, like `kubectl apply --validate=strict`, refuses unknown fields."""
    schema = copy.deepcopy(schema)

    def walk(node: dict) -> None:
        if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node \
                and not node.get("x-kubernetes-preserve-unknown-fields"):
            node["additionalProperties"] = False
        for child in node.get("properties", {}).values():
            walk(child)
        if isinstance(node.get("items"), dict):
            walk(node["items"])
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"])

    walk(schema)
    return schema


@pytest.fixture(scope="session")
def keda_schema() -> dict:
    crd = yaml.safe_load(KEDA_CRD.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    return _strict(version["schema"]["openAPIV3Schema"])


def _validate(obj: dict, keda_schema: dict, version: str) -> None:
    if obj["apiVersion"] == "keda.sh/v1alpha1":
        jsonschema.validate(obj, keda_schema)
    else:
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", KUSTOMIZATIONS)
def test_rendered_manifests_are_valid_kubernetes_and_keda_objects(rendered, keda_schema, path, version):
    objects = rendered[path]
    assert objects, f"{path} rendered nothing"
    for obj in objects:
        try:
            _validate(obj, keda_schema, version)
        except (kubernetes_validate.ValidationError, jsonschema.ValidationError) as exc:
            pytest.fail(f"{path}: {obj['kind']}/{obj['metadata']['name']} invalid for {version}: {exc}")


def test_vendored_keda_crd_is_itself_a_valid_crd():
    kubernetes_validate.validate(yaml.safe_load(KEDA_CRD.read_text()), K8S_VERSIONS[-1], strict=True)


def test_validators_refuse_broken_objects(base, keda_schema):
    """The checks above can fail: unknown fields and KEDA metadata that is not a string are refused."""
    deployment = copy.deepcopy(by_kind(base, "Deployment")["hookstream-receiver"])
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[0], strict=True)
    scaled = copy.deepcopy(by_kind(base, "ScaledObject")["hookstream-processor-cards"])
    scaled["spec"]["triggers"][0]["metadata"]["lagThreshold"] = 500
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(scaled, keda_schema)
    scaled = copy.deepcopy(by_kind(base, "ScaledObject")["hookstream-processor-cards"])
    scaled["spec"]["maxReplicas"] = 6
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(scaled, keda_schema)


def test_every_processor_has_a_deployment_and_a_lag_scaler_bounded_by_partitions(base):
    deployments = by_kind(base, "Deployment")
    scalers = by_kind(base, "ScaledObject")
    partitions = int(by_kind(base, "ConfigMap")["hookstream-settings"]["data"]["HOOKSTREAM_TOPIC_PARTITIONS"])
    assert set(scalers) == {f"hookstream-processor-{p}" for p in PROCESSORS}
    for name in PROCESSORS:
        deployment = deployments[f"hookstream-processor-{name}"]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["args"] == ["process", name]
        assert "replicas" not in deployment["spec"], "KEDA owns processor replicas"
        spec = scalers[f"hookstream-processor-{name}"]["spec"]
        assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                          "name": f"hookstream-processor-{name}"}
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= partitions
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "kafka"
        meta = trigger["metadata"]
        assert meta["consumerGroup"] == f"hookstream.{name}"
        assert meta["topic"] == PROCESSOR_TOPICS[name]
        assert int(meta["lagThreshold"]) > 0
        assert meta["allowIdleConsumers"] == "false"
        env_name = meta["bootstrapServersFromEnv"]
        assert env_name in by_kind(base, "ConfigMap")["hookstream-settings"]["data"]
        assert container["envFrom"] == [{"configMapRef": {"name": "hookstream-settings"}}]


def _containers(objects: list[dict]):
    for obj in objects:
        if obj["kind"] in ("Deployment", "StatefulSet"):
            pod = obj["spec"]["template"]["spec"]
            for container in pod["containers"]:
                yield obj, pod, container


@pytest.mark.parametrize("path", KUSTOMIZATIONS)
def test_probes_hit_the_endpoints_each_role_serves_on_the_port_it_listens_on(rendered, path):
    config = by_kind(rendered[path], "ConfigMap")["hookstream-settings"]["data"]
    seen = 0
    for obj, _, container in _containers(rendered[path]):
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        args = container["args"]
        if args[0] == "ingest":
            assert ports["http"] == int(args[args.index("--port") + 1])
            expected = {"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/healthz"}
        else:
            assert args[0] == "process"
            assert ports["http"] == int(config["HOOKSTREAM_PROCESSOR_HTTP_PORT"])
            expected = {"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/healthz"}
        for probe, endpoint in expected.items():
            assert container[probe]["httpGet"] == {"path": endpoint, "port": "http"}, (obj["metadata"]["name"], probe)
        annotations = obj["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(ports["http"])
        assert annotations["prometheus.io/path"] == "/metrics"
        seen += 1
    assert seen == 1 + len(PROCESSORS)


@pytest.mark.parametrize("path", KUSTOMIZATIONS)
def test_pods_run_restricted_with_requests_and_limits(rendered, path):
    for obj, pod, container in _containers(rendered[path]):
        name = obj["metadata"]["name"]
        sc = pod["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] == DOCKER_UID, name
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is False, name
        csc = container["securityContext"]
        assert csc == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                       "capabilities": {"drop": ["ALL"]}}, name
        for kind in ("requests", "limits"):
            assert set(container["resources"][kind]) == {"cpu", "memory"}, (name, kind)
        # A read-only root needs writable mounts for /tmp (and the receiver's spool).
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert "/tmp" in mounts, name
        if container["args"][0] == "ingest":
            assert "/var/lib/hookstream/spool" in mounts


def test_settings_come_from_the_configmap_and_secrets_from_secret_references(base):
    fields = {f"HOOKSTREAM_{name.upper()}" for name in Settings.model_fields}
    config = by_kind(base, "ConfigMap")["hookstream-settings"]["data"]
    unknown = set(config) - fields
    assert not unknown, f"ConfigMap keys that are no setting: {unknown}"
    secret_settings = {"HOOKSTREAM_WEBHOOK_KEYS", "HOOKSTREAM_API_KEY", "HOOKSTREAM_DATABASE_URL"}
    assert not secret_settings & set(config), "secrets must not be in the ConfigMap"
    referenced = set()
    for obj, _, container in _containers(base):
        for env in container.get("env", []):
            assert env["name"] in fields, env["name"]
            assert "value" not in env, f"{obj['metadata']['name']}: literal value for {env['name']}"
            ref = env["valueFrom"]["secretKeyRef"]
            assert ref["name"] == "hookstream-secrets"
            referenced.add((env["name"], ref["key"]))
    assert {name for name, _ in referenced} == secret_settings
    # docs/operations.md tells how to create exactly these keys.
    ops = (REPO / "docs/operations.md").read_text()
    for _, key in referenced:
        assert f"--from-literal={key}=" in ops, f"docs/operations.md does not show how to set {key}"


def test_hpa_and_pdb_target_the_receiver_in_every_variant(rendered):
    for path, objects in rendered.items():
        (hpa,) = by_kind(objects, "HorizontalPodAutoscaler").values()
        (pdb,) = by_kind(objects, "PodDisruptionBudget").values()
        target = hpa["spec"]["scaleTargetRef"]
        workload = by_kind(objects, target["kind"])[target["name"]]
        assert workload["spec"]["template"]["metadata"]["labels"].items() >= \
            pdb["spec"]["selector"]["matchLabels"].items(), path
        assert hpa["spec"]["minReplicas"] >= 2, "one receiver alone cannot be drained without downtime"


def test_persistent_spool_overlay_keeps_each_receivers_spool_on_its_own_claim(rendered):
    objects = rendered["deploy/k8s/overlays/persistent-spool"]
    assert "hookstream-receiver" not in by_kind(objects, "Deployment")
    sts = by_kind(objects, "StatefulSet")["hookstream-receiver"]
    claims = {c["metadata"]["name"] for c in sts["spec"]["volumeClaimTemplates"]}
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    spool = [m for m in container["volumeMounts"] if m["mountPath"] == "/var/lib/hookstream/spool"]
    assert [m["name"] for m in spool] == ["spool"] and "spool" in claims
    assert "spool" not in {v["name"] for v in sts["spec"]["template"]["spec"].get("volumes", [])}
    assert sts["spec"]["serviceName"] in by_kind(objects, "Service")


def _parse_with_cli(args: list[str]) -> None:
    """Parse `hookstream ARGS` with the real click commands, without running them."""
    ctx = click.Context(main, info_name="hookstream")
    command = main.get_command(ctx, args[0])
    assert command is not None, f"`hookstream {args[0]}` does not exist"
    rest = args[1:]
    while isinstance(command, click.Group):
        sub = command.get_command(ctx, rest[0])
        assert sub is not None, f"`hookstream {args[0]} {rest[0]}` does not exist"
        command, rest = sub, rest[1:]
    command.make_context(" ".join(args[:1]), list(rest))


def container_commands() -> list[list[str]]:
    """Every hookstream command line in deploy/: Dockerfile CMD, Kubernetes args, compose commands."""
    from test_deploy.conftest import render

    out = []
    for path in KUSTOMIZATIONS:
        out += [c["args"] for _, _, c in _containers(render(path))]
    compose = yaml.safe_load((REPO / "deploy/compose.yaml").read_text())
    out += [s["command"] for s in compose["services"].values() if s.get("image", "").startswith("hookstream")]
    dockerfile = (REPO / "deploy/docker/Dockerfile").read_text()
    out.append(yaml.safe_load(re.search(r"^CMD (\[.*\])$", dockerfile, re.M).group(1)))
    return out


def test_every_deployed_command_line_is_accepted_by_the_hookstream_cli():
    commands = container_commands()
    assert {c[0] for c in commands} >= {"ingest", "process", "sandbox", "topics", "db"}
    for args in commands:
        try:
            _parse_with_cli(args)
        except click.UsageError as exc:
            pytest.fail(f"`hookstream {' '.join(args)}`: {exc}")
