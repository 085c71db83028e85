"""The sending core: ``submit`` (the one door every SMS goes through, a pipeline of small steps),
credits and accounts (with the state of balance alerts), the outbox and its state changes, the
dispatcher (the only part that calls providers), delivery reports and provider callbacks, the
message history API and CLI read (``history``), idempotency keys, provider rate limits, and the
numbers an account never sends to (blacklist, invalid numbers). What follows a commit (the
balance alert, the submitted metrics) is registered with ``hub.store.db.after_commit`` and runs
once the door's transaction is committed. It may import ``hub.core``, ``hub.store``,
``hub.ports`` and ``hub.compliance``; the features import it.
"""
