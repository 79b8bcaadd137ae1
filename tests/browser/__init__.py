"""Browser tests (a package, so that its modules share their page helpers as ``from . import
chat_page``)."""
