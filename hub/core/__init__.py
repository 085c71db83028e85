"""The ground every other package stands on: configuration, phone numbers, SMS segments, time, the
hub's Jinja2 templating (its own templates and users' sandboxed ones), languages, CSV output,
metrics and the background-worker lifecycle. It imports nothing of the hub but ``hub.errors``
and ``hub.compliance`` (the rule types the config holds).
"""
