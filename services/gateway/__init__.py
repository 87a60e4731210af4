"""The Envoy gateway: settings, the rendered Envoy bootstrap, and `speechmesh up`."""
