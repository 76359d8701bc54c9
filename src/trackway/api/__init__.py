"""The admin and read API, and the mapping of errors to HTTP."""
