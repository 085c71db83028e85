"""`python -m hub` is `smshub`."""

from hub.cli.main import main

main()
