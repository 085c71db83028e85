"""The SMS connectors: one module (or package, for SMPP) per gateway or provider, each
implementing ``hub.ports.sms.SmsProvider`` and named in pyproject's ``smshub.sms_providers``
entry points. ``base`` is the shape they share (settings, context, ``send`` around
``attempt``, logging); ``http_base`` adds, for the providers with an HTTP API, the client and
its lifecycle, the flow build request → send → read answer, and the one transport-error
policy; ``callback_json`` reads callbacks whose body is one JSON object. They import the
hub's ports, config, errors, phone numbers and segments, and ``connectors.http_lanes``; never
one another but through these shared modules.
"""
