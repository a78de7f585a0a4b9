"""Integrations with frameworks and libraries; each module imports its dependency lazily.

* :mod:`buttress.integrations.asgi` — ASGI middleware (Starlette, FastAPI, any ASGI app).
"""
