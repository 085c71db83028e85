"""smshub: e-mail to SMS, calendar reminders and their answers, around one sending core.

Packages, from the bottom up (each imports only those below it; ``docs/architecture.md`` draws
the data flow): ``core`` and ``errors`` (config, numbers, segments, time, templating, the error
tree), ``store`` (tables and what instances share in SQL), ``ports`` (what connectors
implement), ``compliance`` and ``outbound`` (sending rules, the outbound guard), ``sending``
(submit, credits, outbox, dispatch, reports), the features ``inbound``, ``campaigns``,
``reminders`` and ``mail``, the interfaces ``api``, ``web``, ``console`` and ``cli``, the process
``runtime``, and ``app``, the one composition root.
"""
