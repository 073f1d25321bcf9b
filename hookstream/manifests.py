"""The deploy/ files that name processors, rendered from the processor registry (`hookstream deploy render`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from string import Template

from hookstream.processors.base import Processor

GENERATED = ("# Rendered by `hookstream deploy render` from the processor registry: "
             "edit the template in hookstream/manifests.py.\n")
COMPOSE_BEGIN = ("  # --- processors: rendered by `hookstream deploy render` from the processor registry; "
                 "do not edit ---\n")
COMPOSE_END = "  # --- end of rendered processors ---\n"
METRICS_PORT = 9100  # HOOKSTREAM_PROCESSOR_HTTP_PORT in deploy/k8s/base/configmap.yaml and compose.yaml
LAG_EXPORTER = "lag-exporter:9308"

API_KEY = """\
            - name: HOOKSTREAM_API_KEY
              valueFrom:
                secretKeyRef:
                  name: hookstream-secrets
                  key: api-key
"""

DEPLOYMENT = Template("""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: hookstream-processor-${name}
  labels:
    app.kubernetes.io/name: hookstream-processor-${name}
    app.kubernetes.io/component: processor
    hookstream.io/processor: ${name}
spec:
  # No replicas field: KEDA (processors-keda.yaml) owns the replica count.
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      app.kubernetes.io/name: hookstream-processor-${name}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: hookstream-processor-${name}
        app.kubernetes.io/component: processor
        hookstream.io/processor: ${name}
      annotations:
        prometheus.io/scrape: "true"
        prometheus.io/port: "9100"
        prometheus.io/path: /metrics
    spec:
      serviceAccountName: hookstream
      automountServiceAccountToken: false
      # HOOKSTREAM_PROCESSOR_SHUTDOWN_TIMEOUT_S (20 s) to finish in-flight records and commit, plus margin.
      terminationGracePeriodSeconds: 30
      securityContext:
        runAsNonRoot: true
        runAsUser: 10001
        runAsGroup: 10001
        fsGroup: 10001
        seccompProfile:
          type: RuntimeDefault
      containers:
        - name: processor
          image: hookstream
          imagePullPolicy: IfNotPresent
          args: ["process", "${name}"]
          ports:
            - name: http
              containerPort: 9100
              protocol: TCP
          envFrom:
            - configMapRef:
                name: hookstream-settings
          env:
            - name: HOOKSTREAM_KAFKA_SASL_USERNAME
              valueFrom:
                secretKeyRef:
                  name: hookstream-secrets
                  key: kafka-sasl-username
            - name: HOOKSTREAM_KAFKA_SASL_PASSWORD
              valueFrom:
                secretKeyRef:
                  name: hookstream-secrets
                  key: kafka-sasl-password
            - name: HOOKSTREAM_DATABASE_URL
              valueFrom:
                secretKeyRef:
                  name: hookstream-secrets
                  key: database-url
${api_key}          startupProbe:
            httpGet:
              path: /healthz
              port: http
            periodSeconds: 2
            failureThreshold: 30
          livenessProbe:
            httpGet:
              path: /healthz
              port: http
            periodSeconds: 10
            timeoutSeconds: 2
            failureThreshold: 3
          readinessProbe:
            httpGet:
              path: /healthz
              port: http
            periodSeconds: 10
            timeoutSeconds: 2
            failureThreshold: 3
          resources:
            requests:
              cpu: 100m
              memory: 192Mi
            limits:
              cpu: 500m
              memory: 384Mi
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities:
              drop: ["ALL"]
          volumeMounts:
            - name: tmp
              mountPath: /tmp
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
""")

PROCESSORS_HEADER = """\
# One Deployment per registered processor (`hookstream process NAME`); each exposes /healthz and /metrics on :9100.
# Only the processors that call the CryptoMate API (their class overrides needs_api) get the API key.
"""

KEDA_HEADER = """\
# KEDA scales each processor on its consumer group's lag; metadata values are strings (KEDA's schema).
# Rendered from deploy/k8s/base/configmap.yaml too: the bootstrap address is read from the target container's
# HOOKSTREAM_KAFKA_BOOTSTRAP; `sasl` and `tls` follow HOOKSTREAM_KAFKA_SECURITY_PROTOCOL/SASL_MECHANISM, the
# credentials come from the TriggerAuthentication below (the same Secret keys the processors use);
# consumerGroup and topic carry HOOKSTREAM_TOPIC_PREFIX (the group is `<prefix>hookstream.<processor>`).
# A processor reading several topics names none: KEDA then sums the lag of every topic its group consumes.
# A private CA or a client certificate: deploy/k8s/components/kafka-tls and kafka-client-cert.
"""

TRIGGER_AUTHENTICATION = """\
apiVersion: keda.sh/v1alpha1
kind: TriggerAuthentication
metadata:
  name: hookstream-kafka
spec:
  secretTargetRef:
    - parameter: username
      name: hookstream-secrets
      key: kafka-sasl-username
    - parameter: password
      name: hookstream-secrets
      key: kafka-sasl-password
"""

AUTHENTICATION_REF = """\
      authenticationRef:
        name: hookstream-kafka
"""

# HOOKSTREAM_KAFKA_SASL_MECHANISM → the kafka trigger's `sasl` value
KEDA_SASL = {"PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256", "SCRAM-SHA-512": "scram_sha512"}

SCALED_OBJECT = Template("""\
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: hookstream-processor-${name}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: hookstream-processor-${name}
  # One consumer per partition at most: extra replicas would sit idle (HOOKSTREAM_TOPIC_PARTITIONS = 6).
  minReplicaCount: 1
  maxReplicaCount: 6
  pollingInterval: 15
  cooldownPeriod: 300
  fallback:
    failureThreshold: 3
    replicas: 2
  advanced:
    horizontalPodAutoscalerConfig:
      behavior:
        scaleDown:
          # Each scale-down is a consumer-group rebalance: do it slowly.
          stabilizationWindowSeconds: 300
  triggers:
    - type: kafka
      metadata:
        bootstrapServersFromEnv: HOOKSTREAM_KAFKA_BOOTSTRAP
        consumerGroup: ${group}
${topic}        lagThreshold: "500"
        activationLagThreshold: "0"
        offsetResetPolicy: earliest
        allowIdleConsumers: "false"
        sasl: ${sasl}
        tls: ${tls}
${auth}""")

PROMETHEUS = Template("""\
# Prometheus for deploy/compose.yaml: scrapes the receiver, every processor by its compose name (labelled with
# `processor`, which HookstreamProcessorDown groups by) and the lag exporter.
# On Kubernetes use scrape-kubernetes.yml instead (pod discovery by annotation).
global:
  scrape_interval: 15s
  evaluation_interval: 15s
rule_files:
  - /etc/prometheus/rules/*.yml
scrape_configs:
  - job_name: hookstream-receiver
    metrics_path: /metrics
    static_configs:
      - targets: ["receiver:8000"]
  - job_name: hookstream-processor
    metrics_path: /metrics
    static_configs:
$targets
  # `hookstream lag --serve`: lag from committed offsets and dead-letter backlogs, alive when processors are not.
  - job_name: hookstream-lag
    metrics_path: /metrics
    static_configs:
      - targets: ["$lag"]
""")

PROMETHEUS_TARGET = Template("""\
      - targets: ["processor-$name:$port"]
        labels:
          processor: $name
""")

COMPOSE_SERVICE = Template("""\
  processor-$name:
    <<: *hookstream
    command: ["process", "$name"]
    depends_on:
      <<: *after-setup
      sandbox:
        condition: service_started
    healthcheck:
      <<: *http-health
      test: ["CMD", "python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/healthz', \
timeout=2)"]

""")

K8S_PROCESSORS = Path("deploy/k8s/base/processors.yaml")
K8S_SCALERS = Path("deploy/k8s/base/processors-keda.yaml")
CONFIGMAP = Path("deploy/k8s/base/configmap.yaml")
PROMETHEUS_CONFIG = Path("deploy/prometheus/prometheus.yml")
COMPOSE = Path("deploy/compose.yaml")


class RenderError(ValueError):
    """A file to render into is not in the shape the renderer expects (e.g. compose.yaml lost its markers)."""


def calls_api(cls: type[Processor]) -> bool:
    """Whether the processor may call the CryptoMate API (it overrides needs_api): its pods get the key."""
    return cls.needs_api is not Processor.needs_api


def scaled_topic(cls: type[Processor]) -> str | None:
    """The topic KEDA measures lag on: the processor's only one; None (every topic of the group) for several."""
    return cls.topics[0] if len(cls.topics) == 1 else None


def configmap_settings(root: Path) -> dict[str, str]:
    """The HOOKSTREAM_* values of the checked-in ConfigMap, which the scalers must agree with."""
    import yaml

    path = root / CONFIGMAP
    try:
        return {k: str(v) for k, v in yaml.safe_load(path.read_text())["data"].items()}
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise RenderError(f"{path}: cannot read the ConfigMap's data ({exc})") from None


def processors_yaml(processors: Mapping[str, type[Processor]]) -> str:
    docs = [DEPLOYMENT.substitute(name=name, api_key=API_KEY if calls_api(cls) else "")
            for name, cls in sorted(processors.items())]
    return GENERATED + PROCESSORS_HEADER + "---\n".join(docs)


def scalers_yaml(processors: Mapping[str, type[Processor]], config: Mapping[str, str]) -> str:
    """One ScaledObject per processor, speaking to Kafka the way the ConfigMap `config` tells every pod to."""
    prefix = config.get("HOOKSTREAM_TOPIC_PREFIX", "")
    protocol = config.get("HOOKSTREAM_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
    sasl = protocol.startswith("SASL_")
    mechanism = config.get("HOOKSTREAM_KAFKA_SASL_MECHANISM", "PLAIN")
    if sasl and mechanism not in KEDA_SASL:
        raise RenderError(f"HOOKSTREAM_KAFKA_SASL_MECHANISM={mechanism} has no KEDA kafka trigger equivalent "
                          f"(one of {', '.join(KEDA_SASL)})")
    docs = []
    for name, cls in sorted(processors.items()):
        topic = scaled_topic(cls)
        docs.append(SCALED_OBJECT.substitute(
            name=name, group=f"{prefix}hookstream.{name}",
            topic=f"        topic: {prefix}{topic}\n" if topic else "",
            sasl=KEDA_SASL[mechanism] if sasl else "none", tls="enable" if protocol.endswith("SSL") else "disable",
            auth=AUTHENTICATION_REF if sasl else ""))
    auth = TRIGGER_AUTHENTICATION if sasl else ""
    return GENERATED + KEDA_HEADER + auth + "".join("---\n" + doc for doc in docs)


def prometheus_yml(processors: Mapping[str, type[Processor]]) -> str:
    targets = "".join(PROMETHEUS_TARGET.substitute(name=name, port=METRICS_PORT) for name in sorted(processors))
    return GENERATED + PROMETHEUS.substitute(targets=targets.rstrip("\n"), lag=LAG_EXPORTER)


def compose_yaml(processors: Mapping[str, type[Processor]], current: str) -> str:
    """compose.yaml with the region between the markers replaced by one service per processor."""
    head, begin, rest = current.partition(COMPOSE_BEGIN)
    _, end, tail = rest.partition(COMPOSE_END)
    if not begin or not end:
        raise RenderError(f"{COMPOSE} has no rendered-processors markers ({COMPOSE_BEGIN.strip()!r} … "
                          f"{COMPOSE_END.strip()!r})")
    services = "".join(COMPOSE_SERVICE.substitute(name=name, port=METRICS_PORT) for name in sorted(processors))
    return head + begin + services + end + tail


def render(root: Path, processors: Mapping[str, type[Processor]]) -> dict[Path, str]:
    """Every file under `root` that names processors → its content for `processors`."""
    if not (root / COMPOSE).is_file():
        raise RenderError(f"{root / COMPOSE} not found: --root must be a hookstream checkout (its deploy/ folder)")
    return {
        K8S_PROCESSORS: processors_yaml(processors),
        K8S_SCALERS: scalers_yaml(processors, configmap_settings(root)),
        PROMETHEUS_CONFIG: prometheus_yml(processors),
        COMPOSE: compose_yaml(processors, (root / COMPOSE).read_text()),
    }


def stale(root: Path, processors: Mapping[str, type[Processor]]) -> list[Path]:
    """The files under `root` whose content differs from what `processors` renders."""
    return [path for path, text in render(root, processors).items()
            if not (root / path).is_file() or (root / path).read_text() != text]
