"""The server-rendered web UI (Jinja2 + HTMX, assets vendored under ``static/``).

``leadflow.web.app.install(app)`` mounts the pages under ``/app`` and the assets under
``/static``; see docs/web.md. Kept import-free so ``leadflow.db.models`` can load the models.
"""
