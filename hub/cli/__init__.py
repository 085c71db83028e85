"""The ``smshub`` command line. ``main`` builds the root group and mounts the groups, each
group module (``accounts``, ``messages``, ``calendars``...) holds one group of subcommands,
and ``common`` what they all share (config and engine of the run, errors and exit codes,
output, shared options). Group modules import ``common`` and the features; ``main`` imports
the group modules; nothing imports ``main``. An interface: it may import every feature and
the composition root; nothing outside imports it.
"""
