"""The one truth, in SQL: tables (``models``), engines, sessions and migrations, the schema check,
backup, and the durable mechanisms every instance shares through the database (claims with
leases, windowed limits, the connector state store, secrets encryption, signing keys, the login
throttle, the leader lock's view). It may import ``hub.core`` and ``hub.ports``.
"""
