"""The ``smshub`` command line: ``main`` holds the root group and the common commands, each
other module one group of subcommands. An interface: it may import every feature and the
composition root; nothing imports it.
"""
