"""Mail connectors: the mailbox sources that feed the intake (IMAP in ``imap_source``, the
Microsoft Graph and Gmail APIs in ``graph_mail`` and ``gmail_api``, all on the one pass of
``source_base.MailboxSource``, with the ``[[imap]]`` settings of ``mailbox_settings``) and the
senders of the hub's own mail (SMTP relay, IMAP APPEND, the same two APIs). They implement
``hub.ports.mail`` (``MailSource``, ``MailSender``, given a ``MailIntake``) and may import
``hub.ports``, ``hub.errors``, ``hub.core``, the mailbox sign-in of ``hub.mail.oauth`` and the
pure parsing helpers of ``hub.mail.parse``; never ``hub.mail.intake``.
"""
