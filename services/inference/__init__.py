"""Model handling shared by the services.

The micro-batcher, the model registry, model state and ids, model sources, devices, language tags.
"""
