"""Appointment reminders: rules, who gets them, their text, and keeping them in step with
the calendar (moved, cancelled, deleted)."""
