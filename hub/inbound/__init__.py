"""What comes back and what the hub tells its customers: a phone's answer (its conversation,
STOP/START, the auto-responder), the hub's own SMS texts, balance alerts and outgoing webhooks.
It may import the sending core and everything below it.
"""
