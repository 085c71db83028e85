"""The HTTP API (FastAPI): messages, provider callbacks, health and metrics, the public link
and unsubscribe pages, and the ``/v1`` management resources. One module-level ``router`` per
module, included in order by ``app.create_api``; routes reach the hub through
``hub.web.deps.HubDep`` and the caller through ``auth.CallerDep``, and share ``support``
(transactions, paging, Idempotency-Key) and the error answers of ``errors``. An interface:
it may import every feature and ``hub.web``; nothing imports it but the composition root
(``hub.app``).
"""
