"""The HTTP intake (``intake:`` in the configuration): native endpoints and an OpenAI-compatible
Batch API, served by the daemon next to ``/metrics``.

``service.py`` does the work on the store, ``routes.py`` and ``app.py`` speak HTTP,
``objects.py`` holds the wire shapes, ``sink.py`` keeps the results it serves, ``server.py``
runs uvicorn in a thread.
"""
