"""The operator's console at ``/console``: server-rendered pages over the admin and read API.

Every page is one Jinja2 template (``templates/``) filled by one handler (``routes.py``) with
what the API answers. The handlers call ``/api`` in-process with the admin bearer
(``client.py``), so the console runs no query of its own and shows the API's own errors.
The browser holds a signed session cookie, never the admin token (``auth.py``).
"""
