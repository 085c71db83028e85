"""E-mail in and out: parsing real people's mail (``parse``), the intake policy of the SMTP and
IMAP doors (``intake``), the durable queue of mail the hub sends (``outbox``), Reply-To tokens
that route an answer back to its conversation, the mailboxes the config names and their OAuth
tokens. It may import the sending core, ``hub.inbound`` and everything below them.
"""
