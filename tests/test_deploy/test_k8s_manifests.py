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
from hookstream.processors.registry import load_all
from hookstream.settings import Settings

# Oldest Kubernetes we promise to run on (PDB policy/v1, HPA autoscaling/v2, StatefulSet PVC retention GA)
# and the newest schemas kubernetes-validate ships.
K8S_VERSIONS = ("1.30.0", kubernetes_validate.utils.latest_version())
KEDA_CRD = REPO / "deploy/k8s/schemas/keda.sh_scaledobjects.yaml"
PROCESSOR_TOPICS = {name: cls.topics[0] for name, cls in load_all().items()}  # KEDA measures one topic
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


# KEDA's TriggerAuthentication (keda.sh/v1alpha1), only the part deploy/ uses, as strict as the rest:
# spec.secretTargetRef[] = {parameter, name, key}, all required (KEDA's CRD field names).
TRIGGER_AUTHENTICATION_SCHEMA = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"}, "kind": {"const": "TriggerAuthentication"},
        "metadata": {"type": "object"},
        "spec": {"type": "object", "additionalProperties": False, "required": ["secretTargetRef"], "properties": {
            "secretTargetRef": {"type": "array", "minItems": 1, "items": {
                "type": "object", "additionalProperties": False, "required": ["parameter", "name", "key"],
                "properties": {k: {"type": "string", "minLength": 1} for k in ("parameter", "name", "key")}}}}},
    },
}


def _validate(obj: dict, keda_schema: dict, version: str) -> None:
    if obj["kind"] == "TriggerAuthentication":
        jsonschema.validate(obj, TRIGGER_AUTHENTICATION_SCHEMA)
    elif obj["apiVersion"] == "keda.sh/v1alpha1":
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
    auth = copy.deepcopy(by_kind(base, "TriggerAuthentication")["hookstream-kafka"])
    auth["spec"]["secretTargetRef"][0]["secret"] = auth["spec"]["secretTargetRef"][0].pop("name")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(auth, TRIGGER_AUTHENTICATION_SCHEMA)


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


def _containers(objects: list[dict], kinds: tuple[str, ...] = ("Deployment", "StatefulSet")):
    for obj in objects:
        if obj["kind"] in kinds:
            pod = obj["spec"]["template"]["spec"]
            for container in pod.get("initContainers", []) + pod["containers"]:
                yield obj, pod, container


ALL_PODS = ("Deployment", "StatefulSet", "Job")


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
        elif args[0] == "lag":
            assert ports["http"] == int(args[args.index("--serve") + 1])
            expected = {"livenessProbe": "/metrics", "readinessProbe": "/metrics"}  # it serves only /metrics
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
    assert seen == 1 + len(PROCESSORS) + 1  # receiver, processors, lag exporter


@pytest.mark.parametrize("path", KUSTOMIZATIONS)
def test_pods_run_restricted_with_requests_and_limits(rendered, path):
    for obj, pod, container in _containers(rendered[path], ALL_PODS):
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
    secret_settings = {"HOOKSTREAM_WEBHOOK_KEYS", "HOOKSTREAM_API_KEY", "HOOKSTREAM_DATABASE_URL",
                       "HOOKSTREAM_KAFKA_SASL_USERNAME", "HOOKSTREAM_KAFKA_SASL_PASSWORD"}
    assert not secret_settings & set(config), "secrets must not be in the ConfigMap"
    referenced = set()
    for obj, _, container in _containers(base, ALL_PODS):
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
        out += [c["args"] for _, _, c in _containers(render(path), ALL_PODS)]
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


def _effective_env(objects: list[dict], container: dict) -> dict[str, str]:
    """The container's environment as Kubernetes builds it: envFrom ConfigMaps, then env (secrets as <ref>)."""
    configmaps = by_kind(objects, "ConfigMap")
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env |= configmaps[source["configMapRef"]["name"]]["data"]
    for item in container.get("env", []):
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        env[item["name"]] = f"<{ref['name']}/{ref['key']}>" if ref else item["value"]
    return env


# Secret values are not in the manifests; validated settings get a stand-in of the form the Secret must hold.
SECRET_STAND_INS = {"<hookstream-secrets/database-url>": "postgresql+psycopg://hookstream@postgres:5432/hookstream"}


def _receiver_env(objects: list[dict]) -> dict[str, str]:
    (container,) = [c for _, _, c in _containers(objects) if c["args"][0] == "ingest"]
    return _effective_env(objects, container)


TLS_MOUNT = "/etc/hookstream/kafka-tls"  # where deploy/k8s/components/kafka-tls mounts hookstream-kafka-tls


@pytest.fixture(scope="module")
def file_stand_ins(tmp_path_factory) -> dict[str, str]:
    """Files a Secret volume would hold, as stand-ins on this machine (settings check that they exist)."""
    folder = tmp_path_factory.mktemp("kafka-tls")
    out = {}
    for key in ("ca.crt", "tls.crt", "tls.key"):
        (folder / key).write_text("stand-in\n")
        out[f"{TLS_MOUNT}/{key}"] = str(folder / key)
    return out


def _settings(env: dict[str, str], file_stand_ins: dict[str, str]) -> Settings:
    stand_ins = SECRET_STAND_INS | file_stand_ins
    return Settings(**{k.removeprefix("HOOKSTREAM_").lower(): stand_ins.get(v, v) for k, v in env.items()})


@pytest.mark.parametrize("path", KUSTOMIZATIONS)
def test_the_deployed_receiver_decides_authorizations_with_the_ledger_policy(rendered, path, file_stand_ins):
    import importlib

    from hookstream.ingest.policy import ledger_policy

    settings = _settings(_receiver_env(rendered[path]), file_stand_ins)
    assert settings.authorization_policy == "hookstream.ingest.policy:ledger_policy"
    module, _, attr = settings.authorization_policy.partition(":")
    assert getattr(importlib.import_module(module), attr) is ledger_policy
    assert _receiver_env(rendered[path])["HOOKSTREAM_DATABASE_URL"] == "<hookstream-secrets/database-url>"
    assert settings.database_url.startswith("postgresql+psycopg://")  # the policy's ledger, from the Secret


@pytest.mark.parametrize("path", KUSTOMIZATIONS)
def test_every_pod_reaches_kafka_with_tls_and_sasl_from_the_secret(rendered, path):
    objects = rendered[path]
    pods = 0
    for obj, _, container in _containers(objects, ALL_PODS):
        if container["args"][:2] == ["db", "upgrade"]:
            continue  # the schema step never talks to Kafka
        env = _effective_env(objects, container)
        assert env["HOOKSTREAM_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL", obj["metadata"]["name"]
        assert env["HOOKSTREAM_KAFKA_SASL_USERNAME"] == "<hookstream-secrets/kafka-sasl-username>"
        assert env["HOOKSTREAM_KAFKA_SASL_PASSWORD"] == "<hookstream-secrets/kafka-sasl-password>"
        pods += 1
    assert pods == 1 + len(PROCESSORS) + 1 + 1  # receiver, processors, topics-create, lag exporter


def test_keda_scalers_use_the_processors_groups_topics_and_kafka_credentials(base):
    from hookstream.processors.runtime import group_id

    config = by_kind(base, "ConfigMap")["hookstream-settings"]["data"]
    settings = Settings(**{k.removeprefix("HOOKSTREAM_").lower(): v for k, v in config.items()
                           if not k.startswith("HOOKSTREAM_KAFKA_S")})
    keda_sasl = {"PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256", "SCRAM-SHA-512": "scram_sha512"}
    (auth,) = by_kind(base, "TriggerAuthentication").values()
    refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
    assert refs == {"username": ("hookstream-secrets", "kafka-sasl-username"),
                    "password": ("hookstream-secrets", "kafka-sasl-password")}
    for name in PROCESSORS:
        (trigger,) = by_kind(base, "ScaledObject")[f"hookstream-processor-{name}"]["spec"]["triggers"]
        meta = trigger["metadata"]
        assert meta["consumerGroup"] == group_id(name, settings)  # follows HOOKSTREAM_TOPIC_PREFIX
        assert meta["topic"] == settings.topic(PROCESSOR_TOPICS[name])
        assert meta["sasl"] == keda_sasl[config["HOOKSTREAM_KAFKA_SASL_MECHANISM"]]
        assert meta["tls"] == ("enable" if config["HOOKSTREAM_KAFKA_SECURITY_PROTOCOL"].endswith("SSL")
                               else "disable")
        assert trigger["authenticationRef"] == {"name": auth["metadata"]["name"]}


def test_keda_scalers_follow_the_configmaps_prefix_and_kafka_security_when_rendered():
    """Scalers are rendered from the ConfigMap: a prefixed or differently secured deployment cannot drift."""
    from hookstream import manifests
    from hookstream.processors.base import Processor
    from hookstream.processors.runtime import group_id

    class TwoTopics(Processor):
        name = "two-topics"
        topics = ("cryptomate.deposits", "cryptomate.unrouted")

    processors = {**load_all(), "two-topics": TwoTopics}
    config = {"HOOKSTREAM_TOPIC_PREFIX": "tenant-a.", "HOOKSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
              "HOOKSTREAM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256"}
    docs = list(yaml.safe_load_all(manifests.scalers_yaml(processors, config)))
    scalers = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ScaledObject"}
    prefixed = Settings(topic_prefix="tenant-a.")
    for name, cls in processors.items():
        (trigger,) = scalers[f"hookstream-processor-{name}"]["spec"]["triggers"]
        assert trigger["metadata"]["consumerGroup"] == group_id(name, prefixed)
        assert trigger["metadata"]["sasl"] == "scram_sha256" and trigger["metadata"]["tls"] == "enable"
        if len(cls.topics) == 1:
            assert trigger["metadata"]["topic"] == prefixed.topic(cls.topics[0])
        else:  # KEDA sums the lag of every topic the group consumes when no topic is named
            assert "topic" not in trigger["metadata"]
    assert [d["kind"] for d in docs].count("TriggerAuthentication") == 1

    plain = list(yaml.safe_load_all(manifests.scalers_yaml(processors, {"HOOKSTREAM_KAFKA_SECURITY_PROTOCOL": "SSL"})))
    assert "TriggerAuthentication" not in [d["kind"] for d in plain]  # no credentials to give
    for doc in plain:
        (trigger,) = doc["spec"]["triggers"]
        assert (trigger["metadata"]["sasl"], trigger["metadata"]["tls"]) == ("none", "enable")
        assert "authenticationRef" not in trigger

    with pytest.raises(manifests.RenderError, match="GSSAPI"):
        manifests.scalers_yaml(processors, {"HOOKSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                                            "HOOKSTREAM_KAFKA_SASL_MECHANISM": "GSSAPI"})


def test_a_prefix_set_in_the_configmap_makes_the_checked_in_scalers_stale(tmp_path):
    import shutil

    from hookstream import manifests

    root = tmp_path / "checkout"
    shutil.copytree(REPO / "deploy", root / "deploy", ignore=shutil.ignore_patterns("__pycache__"))
    assert manifests.stale(root, load_all()) == []
    configmap = root / manifests.CONFIGMAP
    configmap.write_text(configmap.read_text().replace('HOOKSTREAM_TOPIC_PREFIX: ""', 'HOOKSTREAM_TOPIC_PREFIX: "tenant-a."'))
    assert manifests.stale(root, load_all()) == [manifests.K8S_SCALERS]


MTLS = "deploy/k8s/overlays/kafka-mtls"


def test_the_mtls_overlay_gives_every_kafka_client_and_keda_the_private_ca_and_client_certificate(
        rendered, file_stand_ins):
    from hookstream.settings import kafka_security_problem

    objects = rendered[MTLS]
    files = {"HOOKSTREAM_KAFKA_SSL_CAFILE": "ca.crt", "HOOKSTREAM_KAFKA_SSL_CERTFILE": "tls.crt",
             "HOOKSTREAM_KAFKA_SSL_KEYFILE": "tls.key"}
    pods = 0
    for obj, pod, container in _containers(objects, ALL_PODS):
        env = _effective_env(objects, container)
        if container["args"][:2] == ["db", "upgrade"]:
            assert not set(files) & set(env)  # the schema step never talks to Kafka
            continue
        volumes = {v["name"]: v for v in pod["volumes"]}
        (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == TLS_MOUNT]
        assert mount["readOnly"] is True
        assert volumes[mount["name"]]["secret"]["secretName"] == "hookstream-kafka-tls", obj["metadata"]["name"]
        assert {name: env.get(name) for name in files} == {n: f"{TLS_MOUNT}/{k}" for n, k in files.items()}
        settings = _settings({k: v for k, v in env.items() if k.startswith("HOOKSTREAM_KAFKA_")}, file_stand_ins)
        assert kafka_security_problem(settings) is None  # the combination the pod starts with is accepted
        pods += 1
    assert pods == 1 + len(PROCESSORS) + 1 + 1  # receiver, processors, topics-create, lag exporter
    (auth,) = by_kind(objects, "TriggerAuthentication").values()
    refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
    assert refs == {"username": ("hookstream-secrets", "kafka-sasl-username"),
                    "password": ("hookstream-secrets", "kafka-sasl-password"),
                    "ca": ("hookstream-kafka-tls", "ca.crt"), "cert": ("hookstream-kafka-tls", "tls.crt"),
                    "key": ("hookstream-kafka-tls", "tls.key")}


def test_setup_job_upgrades_the_ledger_then_creates_replicated_topics(base):
    job = by_kind(base, "Job")["hookstream-setup"]
    pod = job["spec"]["template"]["spec"]
    assert [c["args"][:2] for c in pod["initContainers"]] == [["db", "upgrade"]]
    (topics,) = pod["containers"]
    assert topics["args"][:2] == ["topics", "create"]
    assert "--all-processors" in topics["args"]  # every registered processor's dead-letter topic
    assert pod["restartPolicy"] == "OnFailure" and job["spec"]["backoffLimit"] >= 1
    config = by_kind(base, "ConfigMap")["hookstream-settings"]["data"]
    assert int(config["HOOKSTREAM_TOPIC_REPLICATION_FACTOR"]) == 3
    assert int(config["HOOKSTREAM_TOPIC_MIN_INSYNC_REPLICAS"]) == 2


@pytest.mark.parametrize("path", KUSTOMIZATIONS)
def test_everything_lives_in_the_hookstream_namespace(rendered, path):
    objects = rendered[path]
    (namespace,) = by_kind(objects, "Namespace").values()
    assert namespace["metadata"]["name"] == "hookstream"
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == "hookstream", (obj["kind"], obj["metadata"]["name"])


@pytest.mark.parametrize("path", KUSTOMIZATIONS)
def test_network_policies_deny_by_default_and_open_only_each_roles_port(rendered, path):
    objects = rendered[path]
    policies = by_kind(objects, "NetworkPolicy")

    def selects(policy: dict, labels: dict) -> bool:
        return policy["spec"]["podSelector"].get("matchLabels", {}).items() <= labels.items()

    deny = policies["hookstream-default-deny"]
    assert "ingress" not in deny["spec"] and "egress" not in deny["spec"]
    assert set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    egress_ports = {(p["protocol"], p["port"], p.get("endPort", p["port"]))
                    for rule in policies["hookstream-egress"]["spec"]["egress"] for p in rule["ports"]}
    assert ("UDP", 53, 53) in egress_ports and ("TCP", 5432, 5432) in egress_ports
    bootstrap_port = int(by_kind(objects, "ConfigMap")["hookstream-settings"]["data"]
                         ["HOOKSTREAM_KAFKA_BOOTSTRAP"].rsplit(":", 1)[1])
    assert any(lo <= bootstrap_port <= hi for proto, lo, hi in egress_ports if proto == "TCP")
    for obj, pod, container in _containers(objects, ALL_PODS):
        labels = obj["spec"]["template"]["metadata"]["labels"]
        assert selects(deny, labels) and selects(policies["hookstream-egress"], labels), obj["metadata"]["name"]
        opened = [p for p in policies.values() if "ingress" in p["spec"] and selects(p, labels)]
        ports = {port["port"] for p in opened for rule in p["spec"]["ingress"] for port in rule["ports"]}
        named = {p["name"] for p in container.get("ports", [])}
        assert ports <= named, (obj["metadata"]["name"], ports, named)  # only ports the pod serves
        if container["args"][0] in ("ingest", "process", "lag"):
            assert ports == {"http"}, obj["metadata"]["name"]


@pytest.mark.parametrize("path", KUSTOMIZATIONS)
def test_the_lag_exporter_runs_beside_the_processors_and_is_scraped_as_hookstream_lag(rendered, path, tmp_path):
    from test_deploy.conftest import run, tool

    objects = rendered[path]
    deployment = by_kind(objects, "Deployment")["hookstream-lag-exporter"]
    assert deployment["spec"]["replicas"] == 1
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    port = int(container["args"][container["args"].index("--serve") + 1])
    assert container["args"][:2] == ["lag", "--serve"] and container["args"][-2:] == ["--host", "0.0.0.0"]
    template = deployment["spec"]["template"]["metadata"]
    assert template["annotations"]["prometheus.io/scrape"] == "true"
    assert template["annotations"]["prometheus.io/port"] == str(port)
    service = by_kind(objects, "Service")["hookstream-lag-exporter"]
    assert service["spec"]["selector"].items() <= template["labels"].items()
    assert [p["port"] for p in service["spec"]["ports"]] == [port]

    # The Kubernetes scrape config finds it by annotation and names its job as the rules expect.
    scrape = yaml.safe_load((REPO / "deploy/prometheus/scrape-kubernetes.yml").read_text())
    config = {"rule_files": [str(REPO / "deploy/prometheus/rules/*.yml")], **copy.deepcopy(scrape)}
    for job in config["scrape_configs"]:  # the local promtool is built without Kubernetes discovery:
        job.pop("kubernetes_sd_configs")  # check everything else (relabel regexes, rules) against file discovery
        job["file_sd_configs"] = [{"files": [str(tmp_path / "targets.json")]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    result = run([tool("promtool"), "check", "config", str(tmp_path / "prometheus.yml")])
    assert result.returncode == 0, result.stdout + result.stderr
    (job,) = scrape["scrape_configs"]
    jobs = {}
    for rule in job["relabel_configs"]:
        if rule.get("target_label") == "job":
            for component in re.fullmatch(r"\(?([\w|-]+)\)?", rule["regex"]).group(1).split("|"):
                jobs[component] = rule["replacement"].replace("$1", component)
    for obj in objects:
        if obj["kind"] in ("Deployment", "StatefulSet"):
            labels = obj["spec"]["template"]["metadata"]["labels"]
            if obj["spec"]["template"]["metadata"].get("annotations", {}).get("prometheus.io/scrape") == "true":
                assert labels["app.kubernetes.io/component"] in jobs, obj["metadata"]["name"]
    assert jobs == {"receiver": "hookstream-receiver", "processor": "hookstream-processor",
                    "lag-exporter": "hookstream-lag"}
    relabelled = {r["target_label"] for r in job["relabel_configs"] if "target_label" in r}
    assert "processor" in relabelled  # HookstreamProcessorDown groups up{} by it
