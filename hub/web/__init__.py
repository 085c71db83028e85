"""What the HTTP API and the web console share: the checked types of what arrives over HTTP
(``edge``), the bounds of the HTTP server (``limits``), the hub serving a request as one
typed dependency (``deps``), and who may read ``/metrics`` (``metrics_gate``, also used by
the ops port). It may import ``hub.core`` and ``hub.store``.
"""
