"""`speechmesh up`: the supervisor that runs every service and Envoy as local processes."""
