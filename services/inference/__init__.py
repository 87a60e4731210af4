"""Model handling shared by the services.

The micro-batcher, model state, model sources, devices, language tags.
"""
