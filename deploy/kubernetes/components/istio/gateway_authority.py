"""Makes the gateway's Envoy send each upstream request with its service's name as :authority.

    python gateway_authority.py /etc/speechmesh/envoy.yaml

An Istio sidecar routes the HTTP and gRPC requests a pod sends by their Host/:authority, not by
the address they go to: a request for `asr` reaches the route table of the ASR Service (mTLS,
least-request balancing over its pods, outlier detection, the VirtualService's retries), while
one that still carries the client's authority (`api.example.com`, `localhost:8080`) matches no
Service and leaves through Istio's passthrough cluster in plaintext, which the services'
STRICT PeerAuthentication refuses. The gateway's Envoy forwards the client's authority as it
came, so in the mesh every route that goes to a DNS-named upstream cluster (asr, translate, tts
and the realtime WebSocket clusters; their address is the Service's name) gets
`auto_host_rewrite`, which sets the authority to that name. Routes that already rewrite the
host, direct responses and the admin clusters are left as they are.

Runs as an init container after `render-config` (kustomization.yaml), in the gateway-config
image, which has Python and PyYAML. Exits 1, and the pod does not start, if it finds no route to
rewrite: the rendered configuration is not what this expects.

Until the gateway's configuration generator offers this itself (a setting that adds
`auto_host_rewrite` to the upstream routes), the Istio component needs this step.
"""

from __future__ import annotations

import sys

import yaml

DNS_CLUSTERS = ("STRICT_DNS", "LOGICAL_DNS")
HOST_REWRITES = (
    "host_rewrite_literal",
    "auto_host_rewrite",
    "host_rewrite_header",
    "host_rewrite_path_regex",
)


def route_tables(config: dict):
    for listener in config.get("static_resources", {}).get("listeners", []):
        for chain in listener.get("filter_chains", []):
            for network_filter in chain.get("filters", []):
                table = network_filter.get("typed_config", {}).get("route_config")
                if table:
                    yield table


def rewrite(config: dict) -> int:
    """Sets auto_host_rewrite on every route to a DNS cluster; returns how many."""
    clusters = {
        cluster["name"]: cluster.get("type")
        for cluster in config.get("static_resources", {}).get("clusters", [])
    }
    count = 0
    for table in route_tables(config):
        for host in table.get("virtual_hosts", []):
            for route in host.get("routes", []):
                action = route.get("route")
                if not action or clusters.get(action.get("cluster")) not in DNS_CLUSTERS:
                    continue
                if any(key in action for key in HOST_REWRITES):
                    continue
                action["auto_host_rewrite"] = True
                count += 1
    return count


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    path = argv[1]
    with open(path) as file:
        config = yaml.safe_load(file)
    count = rewrite(config)
    if count == 0:
        print(f"{path}: no route to an upstream DNS cluster to rewrite", file=sys.stderr)
        return 1
    with open(path, "w") as file:
        yaml.safe_dump(config, file, sort_keys=False)
    print(f"{path}: auto_host_rewrite on {count} upstream routes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
