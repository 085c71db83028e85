"""Schema migrations (Alembic): the schema only moves forward.

Rules every migration follows:

- ``versions/0001_initial_schema.py`` is the schema of release 0.1.0. It is never edited
  again, nor is any migration once released: a change is a new file, numbered after the
  last (``0002_...``), whose ``down_revision`` is the one before.
- **Expand, then contract**, so that instances of the previous version keep working
  during a rolling upgrade (``smshub db upgrade`` first, then the instances one by one):

  * *expand* (any release): add tables, add columns that are nullable or have a server
    default, add indexes (``postgresql_concurrently`` for large tables). Old code ignores
    what it does not know; new code must cope with rows written by old code meanwhile.
  * *contract* (a later release, once no instance of the version that used them runs):
    drop columns and tables, tighten NOT NULL, rename (a rename is add + copy + drop
    across two releases).
  * never in one step: rename or retype a column, drop something the previous release
    reads, or add a NOT NULL column without a server default.

- SQLite column changes go through ``op.batch_alter_table``; each migration runs on
  SQLite and PostgreSQL, and ``models.py`` is updated to match (tests/test_schema.py).
- Data written at 0.1.0 must survive every step: tests/test_migrations.py upgrades a
  0.1.0 database full of data one revision at a time and checks every row; a migration
  that changes data on purpose says how there (``TRANSFORMED``).

Start-up and ``smshub db upgrade`` check that the schema is what its revision makes
before touching anything (hub.store.schema_check); ``smshub db check`` lists what differs.
"""
