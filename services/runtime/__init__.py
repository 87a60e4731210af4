"""What every service process stands on.

Server host, interceptor, errors, settings, logging, metrics, health.
"""
