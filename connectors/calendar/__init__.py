"""Calendar sources: one module per outside calendar (``ics``, ``caldav``, ``google``,
``graph`` with its settings, MSAL sign-in, device-code login and renewed tokens beside it,
``exchange``), each implementing hub.ports.calendar.CalendarSource on the one shape of
``base`` (the base owns the flow; each source fills in reading, writing a note, closing);
``cursor`` is the cursor codec of the sources that sync by delta.
They may import hub.ports, hub.errors, hub.outbound (the outbound guard) and hub.mail.parse
(HTML descriptions as text); the hub finds them through the entry points of
pyproject.toml, never by name."""
