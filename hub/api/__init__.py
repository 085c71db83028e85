"""The HTTP API (FastAPI): messages, provider callbacks, health and metrics, and the ``/v1``
management resources, one router module each, sharing the token check of ``auth`` and the
error answers of ``errors``. An interface: it may import every feature; nothing imports it but
the composition root (``hub.app``).
"""
