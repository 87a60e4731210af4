"""deploy/kubernetes under a service mesh (components/istio, components/linkerd) and behind a
Gateway API implementation (components/gateway-api, components/gateway-api-envoy).

Every object of every rendering validates: core kinds strictly against the Kubernetes schemas,
custom resources against the published CRD schemas kept in tests/fixtures/crds (the Istio and
Linkerd CEL rules included). Then what the objects mean is checked against the rest of the
manifests and against the services themselves: which methods stream (the descriptor set), who
calls whom (SPEECHMESH_<SERVICE>_PEERS), the ServiceAccounts the Deployments run as, the ports
their settings open and the time their shutdown takes.
"""

from __future__ import annotations

import copy
import os
import re
import sys

import jsonschema
import kubernetes_validate
import pytest
import yaml

from speechmesh.gateway.config import REALTIME_PATHS, REALTIME_PORTS, UPSTREAM_PORTS
from speechmesh.runtime import identity
from speechmesh.runtime.registry import SERVICE_HEADER
from tests.conftest import ROOT
from tests.deploy.conftest import (
    CRD_FIXTURES,
    KUBERNETES,
    KUBERNETES_VERSIONS,
    SERVICES,
    by_kind,
    crd_schemas,
    env_of,
    env_prefix,
    is_custom_resource,
    kustomize,
    main_container,
    run,
    settings_class,
    tool,
    unevaluated_cel_rules,
    validate_custom_resource,
)

ISTIO = (
    "overlays/istio",
    "overlays/cpu+istio",
    "overlays/gpu+istio+jobs-postgres",
    "overlays/istio+tracing",
)
#: overlays/linkerd includes components/hop-token; an overlay of one's own adds it beside.
LINKERD = (
    "overlays/linkerd",
    "overlays/cpu+linkerd+hop-token",
    "overlays/gpu+linkerd+hop-token+jobs-postgres",
    "overlays/linkerd+tracing",
)
GATEWAY_API = ("overlays/gateway-api", "overlays/cpu+gateway-api")
GATEWAY_API_ENVOY = ("overlays/gpu+gateway-api-envoy", "overlays/cpu+gateway-api-envoy")
RENDERED = (*ISTIO, *LINKERD, *GATEWAY_API, *GATEWAY_API_ENVOY)
#: Every rendering whose pods run the services (all of them), for the mesh-neutral checks.
WITH_PODS = ("base", "overlays/gpu", "overlays/cpu", *RENDERED)
#: gRPC status conditions a mesh may retry on: only UNAVAILABLE (the service did nothing).
RETRYABLE_STATUSES = {"unavailable"}
#: Envoy retry conditions on which the request never reached the service.
BEFORE_THE_SERVICE = {"connect-failure", "refused-stream", "reset-before-request"}
GRPC_STATUSES = {"cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable"}
#: The services' settings of whom to believe the identity header from (a mesh sets them).
MESH_TRUST = {identity.TRUSTED_HOPS_ENV, identity.TRUSTED_SPIFFE_IDS_ENV}
#: Linkerd's default opaque ports (proxy.opaquePorts): none of ours may be among them.
LINKERD_DEFAULT_OPAQUE_PORTS = {25, 587, 3306, 4444, 5432, 6379, 9300, 11211}


def deployments(docs) -> dict[str, dict]:
    return by_kind(docs, "Deployment")


def pod_labels(docs, name: str) -> dict:
    return deployments(docs)[name]["spec"]["template"]["metadata"]["labels"]


def namespace(docs) -> str:
    (name,) = {doc["metadata"]["namespace"] for doc in docs if "namespace" in doc["metadata"]}
    return name


def container_ports(docs, name: str) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in main_container(deployments(docs)[name])["ports"]}


def service_env(docs, service: str) -> dict[str, str]:
    return env_of(main_container(deployments(docs)[service]))


def grpc_port(docs, service: str) -> int:
    """The port the service listens on for gRPC: its settings as its environment sets them."""
    env = service_env(docs, service)
    return int(env.get(env_prefix(service) + "PORT", settings_class(service)().port))


def callers(docs, service: str) -> set[str]:
    """The Deployments that call `service`: the gateway, and every service whose peers setting
    names it (SPEECHMESH_<SERVICE>_PEERS)."""
    found = {"gateway"} if "gateway" in deployments(docs) else set()
    for other in SERVICES:
        variable = env_prefix(other) + "PEERS"
        value = service_env(docs, other).get(variable)
        if value and service in settings_class(other)(peers=value).peers:
            found.add(other)
    return found


def service_account(docs, name: str) -> str:
    return deployments(docs)[name]["spec"]["template"]["spec"]["serviceAccountName"]


def selects(selector: dict, labels: dict) -> bool:
    return selector.get("matchLabels", {}).items() <= labels.items() and not selector.get(
        "matchExpressions"
    )


@pytest.fixture(scope="module")
def methods(descriptor_set) -> dict[str, dict[str, bool]]:
    """area -> {"/package.Service/Method": streaming} for every speechmesh service."""
    from speechmesh.gateway.descriptors import load_descriptor_set

    found: dict[str, dict[str, bool]] = {area: {} for area in UPSTREAM_PORTS}
    for file in load_descriptor_set(descriptor_set).file:
        parts = file.package.split(".")
        if len(parts) == 3 and parts[0] == "speechmesh" and parts[1] in found:
            for service in file.service:
                for method in service.method:
                    path = f"/{file.package}.{service.name}/{method.name}"
                    found[parts[1]][path] = method.client_streaming or method.server_streaming
    assert all(found.values()) and any(s for area in found.values() for s in area.values())
    return found


#: Paths every service also serves: health (unary Check, streaming Watch) and reflection.
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
OTHER_PATHS = (HEALTH_CHECK, "/grpc.health.v1.Health/Watch")
REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"


# -- every object validates ----------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", RENDERED)
def test_every_object_validates(path, version):
    docs = kustomize(path)
    custom = 0
    for doc in docs:
        where = f"{path}: {doc['kind']}/{doc['metadata']['name']}"
        if is_custom_resource(doc):
            custom += 1
            try:
                validate_custom_resource(doc)
            except (jsonschema.ValidationError, LookupError) as error:
                pytest.fail(f"{where}: {error}")
            assert doc["metadata"]["namespace"] == namespace(docs), where
        else:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                pytest.fail(f"{where} ({version}): {error}")
    assert custom, f"{path} renders no custom resource"


def _istio(kind: str) -> dict:
    return copy.deepcopy(next(iter(by_kind(kustomize(ISTIO[0]), kind).values())))


def _linkerd(kind: str) -> dict:
    return copy.deepcopy(next(iter(by_kind(kustomize(LINKERD[0]), kind).values())))


def _broken() -> list[tuple[str, dict]]:
    """Objects that each break their CRD's schema in one place."""
    cases = []
    rule = _istio("DestinationRule")
    rule["spec"]["trafficPolicy"]["loadBalancer"]["simple"] = "BOGUS"
    cases.append(("an unknown load balancer", rule))
    rule = _istio("DestinationRule")
    rule["spec"]["trafficPolicy"]["outlierDetection"]["consecutive5xxErors"] = 5
    cases.append(("a misspelt field", rule))
    service = _istio("VirtualService")
    service["spec"]["http"][0]["timeout"] = "0s"
    cases.append(("a zero timeout (CEL: at least 1ms)", service))
    service = _istio("VirtualService")
    service["spec"]["http"][0]["retries"]["attempts"] = "none"
    cases.append(("attempts not an integer", service))
    authentication = copy.deepcopy(by_kind(kustomize(ISTIO[0]), "PeerAuthentication")["gateway"])
    del authentication["spec"]["selector"]
    cases.append(("port-level mTLS without a selector (CEL)", authentication))
    policy = _istio("AuthorizationPolicy")
    policy["spec"]["action"] = "PERMIT"
    cases.append(("an unknown action", policy))
    server = _linkerd("Server")
    server["spec"]["proxyprotocol"] = server["spec"].pop("proxyProtocol")
    cases.append(
        (
            "a misspelt field (the CRD has no enum of protocols: Linkerd's webhook checks"
            " them, and the tests below check ours)",
            server,
        )
    )
    server = _linkerd("Server")
    del server["spec"]["podSelector"]
    cases.append(("no pod selector", server))
    route = _linkerd("GRPCRoute")
    route["spec"]["rules"][0]["retries"] = {"attempts": 2}
    cases.append(("a GRPCRoute field the standard channel lacks", route))
    gateway = copy.deepcopy(next(iter(by_kind(kustomize(GATEWAY_API[0]), "Gateway").values())))
    del gateway["spec"]["listeners"][0]["protocol"]
    cases.append(("a listener without its required protocol", gateway))
    return cases


BROKEN_CASES = 10


@pytest.mark.parametrize("case", range(BROKEN_CASES))
def test_the_validator_rejects_broken_objects(case):
    """The same validator fails objects that break their schema: it is not a no-op."""
    cases = _broken()
    assert len(cases) == BROKEN_CASES
    what, doc = cases[case]
    with pytest.raises(jsonschema.ValidationError):
        validate_custom_resource(doc)
        pytest.fail(f"{what}: accepted")
    # ... and the object it was made from passes.
    original = next(
        d
        for path in RENDERED
        for d in kustomize(path)
        if d["kind"] == doc["kind"] and d["metadata"]["name"] == doc["metadata"]["name"]
    )
    validate_custom_resource(original)


def test_the_validator_takes_what_the_schemas_allow():
    """int-or-string (a Server's port by name or number), nullable, unknown kinds refused."""
    server = _linkerd("Server")
    server["spec"]["port"] = 50051
    validate_custom_resource(server)
    server["spec"]["port"] = "grpc"
    validate_custom_resource(server)
    with pytest.raises(LookupError):
        validate_custom_resource({**server, "apiVersion": "policy.linkerd.io/v9"})


def test_crd_fixtures_are_the_ones_used_and_say_where_they_come_from():
    """Each fixture names its source; README lists each with its repository, path and version;
    every custom kind rendered has a schema, and every schema kept is used. The Istio and
    Linkerd kinds have every CEL rule evaluated."""
    readme = (CRD_FIXTURES / "README.md").read_text()
    files = sorted(CRD_FIXTURES.glob("*.yaml"))
    assert files
    for path in files:
        header = path.read_text().split("\n---", 1)[0]
        assert re.search(r"Source: https://github\.com/[\w.-]+/[\w.-]+, tag [\w.-]+", header)
        assert path.name in readme, f"README.md does not list {path.name}"
    used = {
        (doc["apiVersion"], doc["kind"])
        for path in RENDERED
        for doc in kustomize(path)
        if is_custom_resource(doc)
    }
    assert used == set(crd_schemas()), set(crd_schemas()) ^ used
    for key in crd_schemas():
        if not key[0].startswith("gateway.networking.k8s.io/"):
            assert unevaluated_cel_rules(key) == 0, key


# -- mesh-neutral: ports, identities, shutdown (every rendering) ---------------------------------


@pytest.mark.parametrize("path", WITH_PODS)
def test_every_grpc_port_is_named_and_marked_grpc(path):
    """Each model server's Service port that targets the gRPC port says appProtocol grpc and
    is named grpc or grpc-*; the realtime WebSocket and metrics ports are http. Meshes take the
    protocol from these."""
    docs = kustomize(path)
    services = by_kind(docs, "Service")
    for name in SERVICES:
        ports = container_ports(docs, name)
        target = {number: port for port, number in ports.items()}
        kinds = {grpc_port(docs, name): "grpc"}
        settings = settings_class(name)()
        kinds[
            int(
                service_env(docs, name).get(
                    env_prefix(name) + "METRICS_PORT", settings.metrics_port
                )
            )
        ] = "http"
        if name in REALTIME_PORTS:
            kinds[int(service_env(docs, name)[env_prefix(name) + "WEBSOCKET_PORT"])] = "http"
        assert set(kinds) == set(ports.values()), (name, ports)
        seen = set()
        for port in services[name]["spec"]["ports"]:
            number = (
                ports[port["targetPort"]]
                if isinstance(port["targetPort"], str)
                else (port["targetPort"])
            )
            assert number in target, (name, port)
            protocol = kinds[number]
            assert port["appProtocol"] == protocol, (name, port)
            assert port["name"] == protocol or port["name"].startswith(protocol + "-"), port
            seen.add(number)
        assert seen == set(kinds), f"{name}: the Service leaves out {set(kinds) - seen}"


@pytest.mark.parametrize("path", WITH_PODS)
def test_each_workload_runs_as_its_own_service_account(path):
    docs = kustomize(path)
    accounts = by_kind(docs, "ServiceAccount")
    for name, deployment in deployments(docs).items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == name, name
        assert accounts[name]["automountServiceAccountToken"] is False, name
        assert pod["automountServiceAccountToken"] is False, name
    assert set(accounts) == set(deployments(docs)), "no ServiceAccount without its workload"


def _drain(docs, name: str) -> tuple[int, float, float]:
    """(terminationGracePeriodSeconds, preStop sleep, the app's own grace for in-flight calls:
    its setting as its environment gives it; Envoy has none)."""
    deployment = deployments(docs)[name]
    container = main_container(deployment)
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    grace = 0.0
    if name in SERVICES:
        grace = float(
            service_env(docs, name).get(
                env_prefix(name) + "GRACE_PERIOD_S", settings_class(name)().grace_period_s
            )
        )
    return deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"], pre_stop, grace


@pytest.mark.parametrize("path", WITH_PODS)
def test_termination_grace_outlasts_the_drain(path):
    """The kubelet waits longer than preStop + the service's own grace, with room left for a
    sidecar to outlive the server."""
    docs = kustomize(path)
    for name in deployments(docs):
        total, pre_stop, grace = _drain(docs, name)
        assert total >= pre_stop + grace + 10, (name, total, pre_stop, grace)


@pytest.mark.parametrize("path", ISTIO)
def test_istio_sidecars_outlive_the_server_and_let_probes_through(path):
    docs = kustomize(path)
    for name, deployment in deployments(docs).items():
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        config = yaml.safe_load(annotations["proxy.istio.io/config"])
        total, pre_stop, _ = _drain(docs, name)
        # Drain until no connection is left, never before the endpoint removal has spread.
        assert config["proxyMetadata"]["EXIT_ON_ZERO_ACTIVE_CONNECTIONS"] == "true", name
        minimum = config["proxyMetadata"]["MINIMUM_DRAIN_DURATION"]
        assert pre_stop < float(minimum.removesuffix("s")) < total, name
        assert config["holdApplicationUntilProxyStarts"] is True, name
        # The kubelet's gRPC and HTTP probes go through the agent, whatever the mesh default.
        assert annotations["sidecar.istio.io/rewriteAppHTTPProbers"] == "true", name
        assert annotations["prometheus.istio.io/merge-metrics"] == "false", name


@pytest.mark.parametrize("path", LINKERD)
def test_linkerd_proxies_outlive_the_server(path):
    docs = kustomize(path)
    for name, deployment in deployments(docs).items():
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        wait = int(annotations["config.alpha.linkerd.io/proxy-wait-before-exit-seconds"])
        total, pre_stop, grace = _drain(docs, name)
        assert pre_stop + grace < wait < total, (name, pre_stop, grace, wait, total)
        assert annotations["config.linkerd.io/proxy-await"] == "enabled", name


@pytest.mark.parametrize("path", ("base", "overlays/gpu", "overlays/cpu", *GATEWAY_API))
def test_without_a_mesh_nothing_assumes_one(path):
    """The base and the hardware overlays name no mesh; the services stay headless (our Envoy
    balances per pod)."""
    docs = kustomize(path)
    text = yaml.safe_dump_all(docs)
    for word in ("istio", "linkerd"):
        assert word not in text, f"{path} mentions {word}"
    for name in SERVICES:
        assert by_kind(docs, "Service")[name]["spec"]["clusterIP"] == "None"


@pytest.mark.parametrize("path", (*ISTIO, *LINKERD))
def test_under_a_mesh_the_services_have_a_cluster_ip_and_nothing_else_changes(path):
    """The sidecars balance per request and attach routes only with a ClusterIP; the rest of the
    overlay is left as it was, but for the mesh's annotations, whom the services believe the
    identity header from (Istio: the mesh's peers) and the gateway's settings, whose ConfigMap the
    component adds to, so its generated name changes. overlays/linkerd is compared with the gpu
    overlay plus the hop token, which it includes."""
    docs = kustomize(path)
    plain = kustomize(
        path.replace("overlays/istio", "overlays/gpu")
        .replace("overlays/linkerd", "overlays/gpu+hop-token")
        .replace("+istio", "")
        .replace("+linkerd", "")
    )
    for name in SERVICES:
        service = by_kind(docs, "Service")[name]
        assert "clusterIP" not in service["spec"], name
        before = by_kind(plain, "Service")[name]
        assert service["spec"]["ports"] == before["spec"]["ports"]
        assert service["spec"]["selector"] == before["spec"]["selector"]
    for name, deployment in deployments(docs).items():
        mine, theirs = copy.deepcopy(deployment), copy.deepcopy(deployments(plain)[name])
        for doc in (mine, theirs):
            doc["spec"]["template"]["metadata"].pop("annotations", None)
            pod = doc["spec"]["template"]["spec"]
            for container in [*pod.get("initContainers", []), *pod["containers"]]:
                # Whom the services believe is the mesh's (test_istio_services_believe_...).
                container["env"] = [
                    e for e in container.get("env", []) if e["name"] not in MESH_TRUST
                ]
                refs = [s.get("configMapRef", {}) for s in container.get("envFrom", [])]
                refs += [
                    e["valueFrom"]["configMapKeyRef"]
                    for e in container.get("env", [])
                    if "configMapKeyRef" in e.get("valueFrom", {})
                ]
                for ref in refs:
                    if ref.get("name", "").startswith("gateway-settings-"):
                        ref["name"] = "gateway-settings"
        assert mine == theirs, name


# -- Istio ----------------------------------------------------------------------------------------


def principal(docs, name: str) -> str:
    """The Istio principal of Deployment `name`: its ServiceAccount in its namespace (the
    default trust domain)."""
    return f"cluster.local/ns/{namespace(docs)}/sa/{service_account(docs, name)}"


@pytest.mark.parametrize("path", ISTIO)
def test_istio_injects_every_pod_and_requires_mtls(path):
    docs = kustomize(path)
    (space,) = by_kind(docs, "Namespace").values()
    assert space["metadata"]["labels"]["istio-injection"] == "enabled"
    authentications = by_kind(docs, "PeerAuthentication")
    default = authentications["default"]["spec"]
    assert default == {"mtls": {"mode": "STRICT"}}, "namespace-wide, no selector, STRICT"
    # Workload exceptions only relax ports callers outside the mesh must reach: the gateway's
    # client and stats ports, the metrics ports. Never a gRPC or realtime port.
    for name in deployments(docs):
        ports = container_ports(docs, name)
        relaxed: set[int] = set()
        for authentication in authentications.values():
            spec = authentication["spec"]
            if "selector" not in spec or not selects(spec["selector"], pod_labels(docs, name)):
                continue
            assert spec["mtls"]["mode"] == "STRICT", authentication["metadata"]["name"]
            for port, setting in spec.get("portLevelMtls", {}).items():
                assert setting["mode"] == "PERMISSIVE"
                relaxed.add(int(port))
        allowed = {ports["http-metrics"]} | ({ports["http"]} if name == "gateway" else set())
        assert relaxed == allowed, (name, relaxed)


@pytest.mark.parametrize("path", ISTIO)
def test_istio_balances_each_request_and_ejects_failing_pods(path):
    docs = kustomize(path)
    rules = by_kind(docs, "DestinationRule")
    assert set(rules) == set(SERVICES)
    for name, rule in rules.items():
        spec = rule["spec"]
        assert spec["host"] == name and name in by_kind(docs, "Service")
        policy = spec["trafficPolicy"]
        assert policy["loadBalancer"] == {"simple": "LEAST_REQUEST"}
        outliers = policy["outlierDetection"]
        assert outliers["consecutive5xxErrors"] > 0 and outliers["consecutiveGatewayErrors"] > 0
        assert outliers["maxEjectionPercent"] < 100 and outliers["minHealthPercent"] > 0
        pool = policy["connectionPool"]
        assert pool["tcp"]["tcpKeepalive"] and pool["http"]["idleTimeout"]
        # No outlier detection on the realtime port (as the gateway's realtime clusters).
        levels = {s["port"]["number"]: s for s in policy.get("portLevelSettings", [])}
        if name in REALTIME_PORTS:
            port = int(service_env(docs, name)[env_prefix(name) + "WEBSOCKET_PORT"])
            off = levels[port]["outlierDetection"]
            assert off["consecutive5xxErrors"] == 0 and off["consecutiveGatewayErrors"] == 0
        else:
            assert not levels


def _istio_route(service: dict, port: int, path: str) -> dict:
    """The first HTTP route of a VirtualService that a request on `port` for `path` matches."""
    for route in service["spec"]["http"]:
        matches = route.get("match") or [{}]
        for match in matches:
            if match.get("port", port) != port:
                continue
            uri = match.get("uri", {})
            if "exact" in uri and uri["exact"] != path:
                continue
            if "prefix" in uri and not path.startswith(uri["prefix"]):
                continue
            assert set(match) <= {"port", "uri"}, match
            return route
    raise AssertionError(f"no route for {path} on {port}")


def _no_retries(route: dict, where: str) -> None:
    assert route["retries"] == {"attempts": 0}, where
    assert "timeout" not in route, f"{where}: a timeout would cut streams"


@pytest.mark.parametrize("path", ISTIO)
def test_istio_retries_unary_calls_on_unavailable_only_and_never_streams(path, methods):
    """Every method of each package routed as its descriptor says: streaming ones never
    retried and never timed out, unary ones retried on UNAVAILABLE (and failures before the
    service) only; health, reflection, the realtime WebSockets and the metrics port no
    retries. Every route says its retries, so Istio's default policy (which retries on
    cancelled) never applies."""
    docs = kustomize(path)
    services = by_kind(docs, "VirtualService")
    assert set(services) == set(SERVICES)
    for name, service in services.items():
        assert service["spec"]["hosts"] == [name]
        port = grpc_port(docs, name)
        for route in service["spec"]["http"]:
            assert "retries" in route, route.get("name")
            for destination in route["route"]:
                assert destination["destination"]["host"] == name
        for method, streaming in methods[name].items():
            route = _istio_route(service, port, method)
            if streaming:
                _no_retries(route, method)
                continue
            retries = route["retries"]
            conditions = set(retries["retryOn"].split(","))
            assert conditions & GRPC_STATUSES == RETRYABLE_STATUSES, method
            assert conditions - GRPC_STATUSES <= BEFORE_THE_SERVICE, method
            assert 0 < retries["attempts"] <= 2 and "timeout" not in route, method
            assert "perTryTimeout" not in retries, method
        for other in (*OTHER_PATHS, REFLECTION):
            _no_retries(_istio_route(service, port, other), f"{name} {other}")
        ports = container_ports(docs, name)
        _no_retries(_istio_route(service, ports["http-metrics"], "/metrics"), "metrics")
        if name in REALTIME_PORTS:
            realtime = _istio_route(service, ports["http-realtime"], REALTIME_PATHS[name])
            _no_retries(realtime, "realtime")
            assert realtime["route"][0]["destination"]["port"]["number"] == ports["http-realtime"]


def test_istio_route_evaluator_follows_the_rules():
    service = {
        "spec": {
            "http": [
                {"name": "a", "match": [{"port": 1, "uri": {"exact": "/x/Y"}}]},
                {"name": "b", "match": [{"port": 1, "uri": {"prefix": "/x/"}}]},
                {"name": "c"},
            ]
        }
    }
    assert _istio_route(service, 1, "/x/Y")["name"] == "a"
    assert _istio_route(service, 1, "/x/Z")["name"] == "b"
    assert _istio_route(service, 2, "/x/Y")["name"] == "c"
    assert _istio_route(service, 1, "/other")["name"] == "c"


def istio_allowed(docs, name: str) -> dict[int, set[str] | None]:
    """Container port -> the principals the ALLOW AuthorizationPolicies of Deployment `name`
    admit there (None: anyone), for policies made only of principals and ports."""
    applying = [
        p
        for p in by_kind(docs, "AuthorizationPolicy").values()
        if selects(p["spec"].get("selector", {}), pod_labels(docs, name))
    ]
    assert applying and all(p["spec"].get("action", "ALLOW") == "ALLOW" for p in applying)
    allowed: dict[int, set[str] | None] = {}
    for policy in applying:
        for rule in policy["spec"]["rules"]:
            principals: set[str] | None = None
            for source in rule.get("from", []):
                assert set(source["source"]) == {"principals"}, rule
                principals = (principals or set()) | set(source["source"]["principals"])
            for to in rule["to"]:
                assert set(to["operation"]) == {"ports"}, rule
                for port in to["operation"]["ports"]:
                    assert int(port) not in allowed, f"{name}: port {port} twice"
                    allowed[int(port)] = principals
    return allowed


@pytest.mark.parametrize("path", ISTIO)
def test_istio_lets_only_the_gateway_and_the_peers_call_each_service(path):
    """Per port of each model server, the principals its AuthorizationPolicy allows are those
    of the ServiceAccounts the calling Deployments run as: gRPC the gateway and the services
    whose peers setting names it, realtime the gateway only, metrics open by port."""
    docs = kustomize(path)
    assert callers(docs, "asr") >= {"gateway", "translate"}
    assert callers(docs, "tts") >= {"gateway", "translate"}
    for name in SERVICES:
        ports = container_ports(docs, name)
        allowed = istio_allowed(docs, name)
        expected = {
            ports["grpc"]: {principal(docs, caller) for caller in callers(docs, name)},
            ports["http-metrics"]: None,
        }
        if name in REALTIME_PORTS:
            expected[ports["http-realtime"]] = {principal(docs, "gateway")}
        assert allowed == expected, name


#: The services that call others with their own caller's identity: translate's cascade
#: (speechmesh/translate/cascade/peers.py) recognizes with ASR and speaks with TTS as its caller.
#: ASR's peers (speechmesh.runtime.peers) ask translate and TTS for ListModels with no identity,
#: so no service needs to believe ASR.
IDENTITY_FORWARDING_PEERS = {"translate"}


def identity_forwarders(docs, service: str) -> set[str]:
    """The Deployments whose identity header `service` must believe: the gateway, and the
    callers (by their peers setting) that forward their caller's identity."""
    return {c for c in callers(docs, service) if c == "gateway" or c in IDENTITY_FORWARDING_PEERS}


def spiffe_id(docs, name: str) -> str:
    """The SPIFFE id of Deployment `name` in an Istio mesh: spiffe:// and its principal."""
    return f"spiffe://{principal(docs, name)}"


def istio_mtls_mode(docs, name: str, port: int) -> str:
    """The mTLS mode PeerAuthentication gives `port` of Deployment `name`'s pods: a selecting
    workload policy's port-level mode, else its mode, else the namespace-wide policy's."""
    authentications = by_kind(docs, "PeerAuthentication").values()
    workload = [
        a["spec"]
        for a in authentications
        if "selector" in a["spec"] and selects(a["spec"]["selector"], pod_labels(docs, name))
    ]
    namespace_wide = [a["spec"] for a in authentications if "selector" not in a["spec"]]
    assert len(workload) <= 1 and len(namespace_wide) <= 1, name
    for spec in workload:
        level = spec.get("portLevelMtls", {}).get(str(port))
        if level:
            return level["mode"]
        if spec.get("mtls", {}).get("mode", "UNSET") != "UNSET":
            return spec["mtls"]["mode"]
    for spec in namespace_wide:
        return spec.get("mtls", {}).get("mode", "PERMISSIVE")
    return "PERMISSIVE"  # Istio's default


def mesh_trust_problems(docs) -> list[str]:
    """What is wrong with the services' trust in the mesh, in a rendering: each runs
    SPEECHMESH_TRUSTED_HOPS=mesh, believing exactly the SPIFFE ids of its identity-forwarding
    callers, every one of which its AuthorizationPolicy admits to the gRPC port; and the ports
    where an identity is read (gRPC, realtime) take mTLS only, without which a sidecar would
    pass on an x-forwarded-client-cert the client wrote."""
    problems = []
    for name in SERVICES:
        env = service_env(docs, name)
        mode = env.get(identity.TRUSTED_HOPS_ENV)
        if mode != "mesh":
            problems.append(f"{name}: {identity.TRUSTED_HOPS_ENV}={mode}")
        trusted = set(identity.spiffe_ids(env.get(identity.TRUSTED_SPIFFE_IDS_ENV) or ""))
        expected = {spiffe_id(docs, caller) for caller in identity_forwarders(docs, name)}
        if trusted != expected:
            problems.append(f"{name} trusts {sorted(trusted)}, not {sorted(expected)}")
        ports = container_ports(docs, name)
        admitted = istio_allowed(docs, name).get(ports["grpc"]) or set()
        if not trusted <= {f"spiffe://{p}" for p in admitted}:
            problems.append(f"{name} trusts ids its AuthorizationPolicy does not admit")
        for port in ("grpc", "http-realtime"):
            if port in ports and istio_mtls_mode(docs, name, ports[port]) != "STRICT":
                problems.append(f"{name}: {port} is not STRICT")
    return problems


@pytest.mark.parametrize("path", ISTIO)
def test_istio_services_believe_the_identity_from_the_forwarding_callers_only(path):
    assert mesh_trust_problems(kustomize(path)) == []


def _broken_trust() -> list[tuple[str, list[dict]]]:
    def env(docs, name):
        return main_container(deployments(docs)[name])["env"]

    def set_env(docs, name, variable, value):
        (item,) = [e for e in env(docs, name) if e["name"] == variable]
        item["value"] = value

    cases = []
    docs = copy.deepcopy(kustomize(ISTIO[0]))
    ids = service_env(docs, "tts")[identity.TRUSTED_SPIFFE_IDS_ENV]
    set_env(docs, "tts", identity.TRUSTED_SPIFFE_IDS_ENV, f"{ids},{spiffe_id(docs, 'asr')}")
    cases.append(("tts trusting asr (which forwards no identity)", docs))
    docs = copy.deepcopy(kustomize(ISTIO[0]))
    set_env(docs, "asr", identity.TRUSTED_SPIFFE_IDS_ENV, spiffe_id(docs, "gateway"))
    cases.append(("asr not trusting translate's cascade", docs))
    docs = copy.deepcopy(kustomize(ISTIO[0]))
    set_env(docs, "translate", identity.TRUSTED_HOPS_ENV, "any")
    cases.append(("translate believing anyone", docs))
    docs = copy.deepcopy(kustomize(ISTIO[0]))
    wrong = spiffe_id(docs, "gateway").replace("/ns/speechmesh/", "/ns/default/")
    set_env(docs, "translate", identity.TRUSTED_SPIFFE_IDS_ENV, wrong)
    cases.append(("another namespace's gateway", docs))
    docs = copy.deepcopy(kustomize(ISTIO[0]))
    (asr,) = [
        a for a in by_kind(docs, "PeerAuthentication").values() if a["metadata"]["name"] == "asr"
    ]
    asr["spec"]["portLevelMtls"][str(container_ports(docs, "asr")["grpc"])] = {"mode": "PERMISSIVE"}
    cases.append(("asr's gRPC port taking plaintext", docs))
    return cases


TRUST_BROKEN_CASES = 5


@pytest.mark.parametrize("case", range(TRUST_BROKEN_CASES))
def test_mesh_trust_check_rejects_broken_renderings(case):
    cases = _broken_trust()
    assert len(cases) == TRUST_BROKEN_CASES
    what, docs = cases[case]
    assert mesh_trust_problems(docs), f"{what}: accepted"


@pytest.mark.parametrize("path", ISTIO[:1])
def test_istio_services_settings_believe_what_their_sidecar_vouches_for(path, monkeypatch):
    """Each service's own settings, read from its pod's environment: a call whose sidecar
    appended an identity-forwarding caller's certificate (x-forwarded-client-cert, its last
    element) carries a believed identity; from any other workload of the namespace it does
    not, also when the client wrote the gateway's element into the header itself."""
    from speechmesh.runtime.identity import HopTrust

    docs = kustomize(path)
    for variable in list(os.environ):
        if variable.startswith("SPEECHMESH_"):
            monkeypatch.delenv(variable)
    for name in SERVICES:
        env = service_env(docs, name)
        with monkeypatch.context() as patch:
            for variable in (identity.TRUSTED_HOPS_ENV, identity.TRUSTED_SPIFFE_IDS_ENV):
                patch.setenv(variable, env[variable])
            hops = HopTrust.from_settings(settings_class(name)())

        def sidecar(*peers: str, service: str = name) -> list[tuple[str, str]]:
            elements = [
                f'By={spiffe_id(docs, service)};Hash=0f;Subject="";URI={spiffe_id(docs, peer)}'
                for peer in peers
            ]
            return [(identity.XFCC_HEADER, ",".join(elements))]

        for caller in deployments(docs):
            believed = caller in identity_forwarders(docs, name)
            assert hops.trusts(sidecar(caller)) is believed, (name, caller)
            assert hops.trusts(sidecar("gateway", caller)) is believed, (name, caller, "spoof")
        assert not hops.trusts([]), name


@pytest.mark.parametrize("path", ISTIO[:1])
def test_istio_gateway_sends_the_service_name_as_authority(path, descriptor_set, tmp_path):
    """The gateway pod renders Envoy's configuration from its settings as the component merges
    them: every route to a service's cluster sets the authority to the cluster's DNS name, which
    is the Service the VirtualService hosts; no cluster ejects hosts (the sidecar does, per pod);
    and Envoy accepts the result."""
    docs = kustomize(path)
    gateway = deployments(docs)["gateway"]
    (render,) = gateway["spec"]["template"]["spec"]["initContainers"]
    assert render["name"] == "render-config"
    config_maps = by_kind(docs, "ConfigMap")
    (settings,) = [v["data"] for k, v in config_maps.items() if k.startswith("gateway-settings")]
    assert settings["SPEECHMESH_GATEWAY_UPSTREAM_HOST_REWRITE"] == "true"
    assert settings["SPEECHMESH_GATEWAY_OUTLIER_DETECTION"] == "false"
    out = tmp_path / "envoy.yaml"
    command = list(render["command"])
    command[command.index("--out") + 1] = str(out)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPEECHMESH_")}
    env.update(settings)
    env["SPEECHMESH_GATEWAY_DESCRIPTOR_SET"] = str(descriptor_set)
    result = run([sys.executable, *command[1:]], env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(out.read_text())
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    hosts = {s["spec"]["hosts"][0] for s in by_kind(docs, "VirtualService").values()}
    rewritten = 0
    for listener in config["static_resources"]["listeners"]:
        for chain in listener["filter_chains"]:
            table = chain["filters"][0]["typed_config"].get("route_config", {})
            for host in table.get("virtual_hosts", []):
                for route in host["routes"]:
                    cluster = clusters.get(route.get("route", {}).get("cluster"))
                    if cluster is None or cluster["type"] != "STRICT_DNS":
                        continue
                    assert route["route"]["auto_host_rewrite"] is True, route["name"]
                    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
                    assert endpoint["endpoint"]["address"]["socket_address"]["address"] in hosts
                    rewritten += 1
    assert rewritten >= len(UPSTREAM_PORTS) + len(REALTIME_PORTS)
    assert not any("outlier_detection" in c for c in clusters.values())
    validated = run([tool("envoy"), "--mode", "validate", "-c", str(out)])
    assert validated.returncode == 0, validated.stdout + validated.stderr


@pytest.mark.parametrize("path", LINKERD[:1])
def test_linkerd_gateway_leaves_ejection_to_the_proxy(path):
    config_maps = by_kind(kustomize(path), "ConfigMap")
    (settings,) = [v["data"] for k, v in config_maps.items() if k.startswith("gateway-settings")]
    assert settings["SPEECHMESH_GATEWAY_OUTLIER_DETECTION"] == "false"
    assert "SPEECHMESH_GATEWAY_UPSTREAM_HOST_REWRITE" not in settings  # routes by destination


# -- Linkerd --------------------------------------------------------------------------------------


def _servers(docs) -> dict[tuple[str, str], dict]:
    """(Deployment, container port name) -> the Server that selects it (exactly one)."""
    found: dict[tuple[str, str], dict] = {}
    for server in by_kind(docs, "Server").values():
        spec = server["spec"]
        hits = [
            (name, spec["port"])
            for name in deployments(docs)
            if selects(spec["podSelector"], pod_labels(docs, name))
            and spec["port"] in container_ports(docs, name)
        ]
        assert hits, f"Server {server['metadata']['name']} selects no port"
        for hit in hits:
            assert hit not in found, f"two Servers select {hit}"
            found[hit] = server
    return found


def _authentications(docs, policy: dict) -> list[dict]:
    refs = policy["spec"]["requiredAuthenticationRefs"]
    return [by_kind(docs, ref["kind"])[ref["name"]] for ref in refs]


def _linkerd_identities(docs, policy: dict) -> set[str] | None:
    """The ServiceAccounts a policy admits (None: any network, unauthenticated)."""
    (authentication,) = _authentications(docs, policy)
    if authentication["kind"] == "NetworkAuthentication":
        cidrs = {n["cidr"] for n in authentication["spec"]["networks"]}
        assert cidrs == {"0.0.0.0/0", "::/0"}
        return None
    refs = authentication["spec"]["identityRefs"]
    assert all(ref["kind"] == "ServiceAccount" and "namespace" not in ref for ref in refs)
    return {ref["name"] for ref in refs}


@pytest.mark.parametrize("path", LINKERD)
def test_linkerd_injects_every_pod_and_nothing_is_opaque(path):
    docs = kustomize(path)
    (space,) = by_kind(docs, "Namespace").values()
    assert space["metadata"]["annotations"]["linkerd.io/inject"] == "enabled"
    assert "opaque-ports" not in yaml.safe_dump_all(docs)
    for name in deployments(docs):
        assert not set(container_ports(docs, name).values()) & LINKERD_DEFAULT_OPAQUE_PORTS


@pytest.mark.parametrize("path", LINKERD)
def test_linkerd_admits_the_gateway_the_peers_probes_and_prometheus_only(path):
    """Every container port has one Server with its protocol declared and a policy (a Server
    without one refuses everything). gRPC: the ServiceAccounts of the gateway and the service's
    callers, plus the kubelet on grpc.health.v1 only; realtime: the gateway; metrics and the
    gateway's client port: any network."""
    docs = kustomize(path)
    servers = _servers(docs)
    policies = by_kind(docs, "AuthorizationPolicy")
    routes = by_kind(docs, "GRPCRoute")
    protocols = {"grpc": "gRPC", "http-realtime": "HTTP/1", "http-metrics": "HTTP/1"}
    for name in deployments(docs):
        for port in container_ports(docs, name):
            server = servers[(name, port)]
            expected = "unknown" if (name, port) == ("gateway", "http") else protocols[port]
            assert server["spec"]["proxyProtocol"] == expected, (name, port)
            server_name = server["metadata"]["name"]
            on_server = [
                p
                for p in policies.values()
                if p["spec"]["targetRef"]["kind"] == "Server"
                and p["spec"]["targetRef"]["name"] == server_name
            ]
            assert len(on_server) == 1, (name, port)
            admitted = _linkerd_identities(docs, on_server[0])
            if port == "grpc":
                expected_accounts = {service_account(docs, c) for c in callers(docs, name)}
                assert admitted == expected_accounts, name
            elif port == "http-realtime":
                assert admitted == {service_account(docs, "gateway")}, name
            else:
                assert admitted is None, (name, port)
            inbound = [
                r
                for r in routes.values()
                if any(
                    p.get("kind") == "Server" and p["name"] == server_name
                    for p in r["spec"]["parentRefs"]
                )
            ]
            if port != "grpc":
                assert not inbound, (name, port)
                continue
            # The probes' route: health only, any network; and a catch-all so that every
            # other call still matches a route.
            (rest,) = [r for r in inbound if r["spec"]["rules"] == [{}]]
            (health,) = [r for r in inbound if r is not rest]
            assert health["spec"]["rules"] == [
                {"matches": [{"method": {"type": "Exact", "service": "grpc.health.v1.Health"}}]}
            ]
            assert rest["spec"]["rules"] == [{}]
            on_health = [
                p
                for p in policies.values()
                if p["spec"]["targetRef"]["kind"] == "GRPCRoute"
                and p["spec"]["targetRef"]["name"] == health["metadata"]["name"]
            ]
            assert [_linkerd_identities(docs, p) for p in on_health] == [None]
            assert not [
                p
                for p in policies.values()
                if p["spec"]["targetRef"]["name"] == rest["metadata"]["name"]
            ]
            probes = main_container(deployments(docs)[name])["readinessProbe"]
            assert probes["grpc"]["port"] == container_ports(docs, name)["grpc"]


def _gamma_route(routes: list[dict], path: str) -> dict:
    """The GRPCRoute rule's route a call of `path` takes among routes attached to one Service
    port, by the Gateway API's precedence: the most characters of a matching service, then of
    a matching method; a rule without matches matches everything, last."""
    service, method = path.strip("/").split("/")
    best, best_key = None, None
    for route in routes:
        for rule in route["spec"]["rules"]:
            for match in rule.get("matches") or [{}]:
                wanted = match.get("method", {})
                assert wanted.get("type", "Exact") == "Exact" and not match.get("headers")
                if wanted.get("service", service) != service:
                    continue
                if wanted.get("method", method) != method:
                    continue
                key = (len(wanted.get("service", "")), len(wanted.get("method", "")))
                if best_key is None or key > best_key:
                    best, best_key = route, key
    assert best is not None, f"no route for {path}: Linkerd would fail the call"
    return best


@pytest.mark.parametrize("path", LINKERD)
def test_linkerd_retries_unary_calls_on_unavailable_only_and_never_streams(path, methods):
    docs = kustomize(path)
    routes = by_kind(docs, "GRPCRoute")
    for name in SERVICES:
        port = grpc_port(docs, name)
        attached = [
            r
            for r in routes.values()
            if any(
                p.get("kind") == "Service" and p["name"] == name for p in r["spec"]["parentRefs"]
            )
        ]
        assert attached, name
        for route in attached:
            for parent in route["spec"]["parentRefs"]:
                assert parent["group"] == "" and parent["port"] == port, route["metadata"]["name"]
            for rule in route["spec"]["rules"]:
                assert rule["backendRefs"] == [{"name": name, "port": port}]
        for method, streaming in [
            *methods[name].items(),
            *((p, True) for p in (*OTHER_PATHS, REFLECTION)),
        ]:
            annotations = _gamma_route(attached, method)["metadata"].get("annotations", {})
            if streaming or not method.startswith(f"/speechmesh.{name}.v1."):
                assert not any(
                    k.startswith(("retry.linkerd.io/", "timeout.linkerd.io/")) for k in annotations
                ), (name, method)
                continue
            assert set(annotations["retry.linkerd.io/grpc"].split(",")) == RETRYABLE_STATUSES
            assert "retry.linkerd.io/http" not in annotations
            assert 0 < int(annotations["retry.linkerd.io/limit"]) <= 2
            assert not any(k.startswith("timeout.linkerd.io/") for k in annotations), method


def test_gamma_precedence_follows_the_rules():
    unary = {
        "metadata": {"name": "u"},
        "spec": {"rules": [{"matches": [{"method": {"service": "s.S"}}]}]},
    }
    streams = {
        "metadata": {"name": "s"},
        "spec": {"rules": [{"matches": [{"method": {"service": "s.S", "method": "Stream"}}]}, {}]},
    }
    assert _gamma_route([unary, streams], "/s.S/Stream")["metadata"]["name"] == "s"
    assert _gamma_route([unary, streams], "/s.S/Call")["metadata"]["name"] == "u"
    assert _gamma_route([unary, streams], "/grpc.health.v1.Health/Check")["metadata"]["name"] == "s"
    with pytest.raises(AssertionError):
        _gamma_route([unary], "/other.O/Call")


# -- Gateway API ----------------------------------------------------------------------------------


def _listeners(docs) -> dict[str, dict]:
    (gateway,) = by_kind(docs, "Gateway").values()
    assert gateway["spec"]["gatewayClassName"]
    return {listener["name"]: listener for listener in gateway["spec"]["listeners"]}


def _check_attachment(docs, route: dict) -> None:
    """The route's parents are the Gateway's listeners that take its kind, and no listener
    carries both GRPCRoutes and HTTPRoutes (the spec would accept only one of them)."""
    listeners = _listeners(docs)
    (gateway,) = by_kind(docs, "Gateway")
    for parent in route["spec"]["parentRefs"]:
        assert parent["name"] == gateway
        kinds = [k["kind"] for k in listeners[parent["sectionName"]]["allowedRoutes"]["kinds"]]
        assert kinds == [route["kind"]], (route["metadata"]["name"], kinds)


def _backend(docs, ref: dict) -> tuple[str, str]:
    """(Service name, the name of its port) a backendRef points at."""
    service = by_kind(docs, "Service")[ref["name"]]
    (port,) = [p for p in service["spec"]["ports"] if p["port"] == ref["port"]]
    return ref["name"], port["name"]


@pytest.mark.parametrize("path", GATEWAY_API)
def test_gateway_api_routes_every_service_without_our_envoy(path, methods):
    """Each package's services go to their own Service's gRPC port by service name; health and
    reflection by x-speechmesh-service (default asr, as our Envoy); the realtime paths to the
    WebSocket ports with no request timeout; the identity header the services trust is removed
    from what clients send, on every rule; our Envoy is gone."""
    docs = kustomize(path)
    assert "gateway" not in deployments(docs) and "gateway" not in by_kind(docs, "Service")
    assert "gateway" not in by_kind(docs, "ServiceAccount")
    config_maps = by_kind(docs, "ConfigMap")
    (settings,) = [v["data"] for k, v in config_maps.items() if k.startswith("gateway-settings")]
    identity = settings["SPEECHMESH_GATEWAY_IDENTITY_HEADER"]
    routes = [*by_kind(docs, "GRPCRoute").values(), *by_kind(docs, "HTTPRoute").values()]
    for route in routes:
        _check_attachment(docs, route)
        for rule in route["spec"]["rules"]:
            assert {
                "type": "RequestHeaderModifier",
                "requestHeaderModifier": {"remove": [identity]},
            } in rule["filters"], route["metadata"]["name"]
    grpc = by_kind(docs, "GRPCRoute")

    def target(service: str, method: str, area: str | None = None) -> tuple[str, str]:
        best, best_key = None, None
        for route in grpc.values():
            for rule in route["spec"]["rules"]:
                for match in rule["matches"]:
                    wanted = match["method"]
                    if wanted["service"] != service or wanted.get("method", method) != method:
                        continue
                    headers = {h["name"]: h["value"] for h in match.get("headers", [])}
                    if headers and headers != {SERVICE_HEADER: area}:
                        continue
                    key = (len(wanted.get("method", "")), len(headers))
                    if best_key is None or key > best_key:
                        (ref,) = rule["backendRefs"]
                        best, best_key = _backend(docs, ref), key
        assert best, (service, method, area)
        return best

    for area, paths in methods.items():
        for path_ in paths:
            service, method = path_.strip("/").split("/")
            assert target(service, method) == (area, "grpc"), path_
        for other in (*OTHER_PATHS, REFLECTION):
            service, method = other.strip("/").split("/")
            assert target(service, method, area) == (area, "grpc"), (area, other)
            assert target(service, method) == ("asr", "grpc"), other
    (realtime,) = by_kind(docs, "HTTPRoute").values()
    found = {}
    for rule in realtime["spec"]["rules"]:
        (match,) = rule["matches"]
        (ref,) = rule["backendRefs"]
        found[match["path"]["value"]] = _backend(docs, ref)
        assert match["path"]["type"] == "Exact" and rule["timeouts"] == {"request": "0s"}
    assert found == {REALTIME_PATHS[a]: (a, "http-realtime") for a in REALTIME_PORTS}


@pytest.mark.parametrize("path", GATEWAY_API)
def test_gateway_api_proxies_may_reach_the_services(path):
    docs = kustomize(path)
    policy = by_kind(docs, "NetworkPolicy")["model-servers-from-gateway-api"]["spec"]
    (rule,) = policy["ingress"]
    (source,) = rule["from"]
    assert source["namespaceSelector"] == {}
    assert source["podSelector"]["matchLabels"] == {
        "gateway.networking.k8s.io/gateway-name": next(iter(by_kind(docs, "Gateway")))
    }
    assert {p["port"] for p in rule["ports"]} == {"grpc", "http-realtime"}
    for name in SERVICES:
        assert selects(policy["podSelector"], pod_labels(docs, name))
        assert "grpc" in container_ports(docs, name)


@pytest.mark.parametrize("path", GATEWAY_API_ENVOY)
def test_gateway_api_in_front_of_our_envoy(path):
    """gRPC by a GRPCRoute (HTTP/2 to the backend), everything else by an HTTPRoute (HTTP/1.1,
    which the WebSocket upgrade needs), both to our Envoy's client port, no request timeout;
    Envoy and its settings unchanged."""
    docs = kustomize(path)
    plain = kustomize(path.replace("+gateway-api-envoy", ""))
    assert deployments(docs) == deployments(plain)
    for kind in ("GRPCRoute", "HTTPRoute"):
        (route,) = by_kind(docs, kind).values()
        _check_attachment(docs, route)
        (rule,) = route["spec"]["rules"]
        (ref,) = rule["backendRefs"]
        assert _backend(docs, ref) == ("gateway", "http")
        if kind == "GRPCRoute":
            assert "matches" not in rule
        else:
            assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
            assert rule["timeouts"] == {"request": "0s"}
    appProtocol = {
        p["name"]: p.get("appProtocol")
        for p in by_kind(docs, "Service")["gateway"]["spec"]["ports"]
    }
    assert appProtocol["http"] is None, "HTTP/1.1 for the HTTPRoute's backend"


def test_overlays_and_components_are_listed_in_the_readme():
    readme = (ROOT / "deploy" / "README.md").read_text()
    for folder in ("istio", "linkerd", "gateway-api", "gateway-api-envoy", "hop-token", "tracing"):
        assert (KUBERNETES / "components" / folder / "kustomization.yaml").is_file()
        assert f"components/{folder}" in readme, folder
    # Every component is in the README, and the Secret the hop token needs is how to create it.
    for folder in (KUBERNETES / "components").iterdir():
        assert f"components/{folder.name}" in readme, folder.name
    assert "create secret generic speechmesh-hop-token" in readme
    for folder in ("istio", "linkerd", "gateway-api"):
        assert f"overlays/{folder}" in readme, folder
