"""Mail to SMS: the SMTP listener (``smtp``) and the intake policy (``policy``) that both
mail doors hand their mail to, through the ``hub.ports.mail.MailIntake`` port for the
mailbox sources of ``connectors/mail``. The policy coordinates small parts, each with one
job: RCPT TO (``rcpt``), intake addresses and SMTP users (``addresses``, ``directory``),
reading a mail without the database (``received``), sender verification (``sender_auth``,
``direct_auth``), authorization (``authorize``), the SMS a mail asks for (``draft``), the
limits (``quota``, ``limits``), one group's transaction (``transaction``, run by
``group_commit``), confirmations (``confirm``), refused mails (``refusals``), the answers
(``outcome``) and the dry run (``preview``). It may import ``hub.mail.parse``, the sending
core, the store, ``hub.campaigns`` (lists, links), ``hub.ports`` and ``hub.core``.
"""
