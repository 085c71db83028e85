"""The protocols connectors implement (SMS provider, calendar source, mail source and sender,
the connector state store), the normalized events they emit, the registry that finds them by
name through entry points, and the OAuth sign-in they are connected with. ``connectors/``
imports these, never the other way round.
"""
