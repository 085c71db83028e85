"""Appointment reminders: rules, who gets them, their text, and keeping them in step with
the calendar (moved, cancelled, deleted): syncing a calendar through its source
(``sync``), planning and writing its reminders (``reconcile``, ``plan_state``,
``plan_write``), the patients' answers (``answers``, ``writeback``), a calendar's setup and
secrets (``setup``, ``calendar_store``), and the preview the CLI and the console share
(``preview``). It may import hub.core, hub.errors, hub.store, hub.ports (the calendar
protocol and the registry of sources), hub.sending (submit, outbox, credits),
hub.compliance, hub.outbound and hub.mail; never the interfaces (api, cli, console) nor
``connectors/``."""
