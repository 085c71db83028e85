"""`python -m hub` is `smshub`."""

from hub.cli import main

main()
