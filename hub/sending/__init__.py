"""The sending core: ``submit`` (the one door every SMS goes through), credits and accounts, the
outbox and its state changes, the dispatcher (the only part that calls providers), delivery
reports and provider callbacks, the message history API and CLI read (``history``),
idempotency keys, provider rate limits, and the numbers an account never sends to (blacklist,
invalid numbers). It may import ``hub.core``, ``hub.store``, ``hub.ports`` and
``hub.compliance``; the features import it.
"""
