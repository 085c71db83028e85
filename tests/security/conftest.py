"""The console fixtures (users, logged-in clients) for the security tests too."""

from tests.console.conftest import console, users  # noqa: F401 (fixtures)
