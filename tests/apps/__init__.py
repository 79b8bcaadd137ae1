"""App modules for tests: each exposes ``ROUTES`` (and optionally ``SOCKET``), as a user's app does."""
