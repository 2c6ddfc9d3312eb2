"""The downloads engine: triggers, resolvers, the task store, workers and fetching.

It imports nothing else from the project, so it can be tested alone. `__all__` names the
modules the drive (provider/), the server and bench/ may import; the rest are the engine's
own parts (tests/test_package_surfaces.py holds both rules). `engine.engine.DownloadEngine`
is the facade the drive and the API talk to; `space_access` is what the drive gives it.
"""

__all__ = [
    "body_copy", "catalog", "cluster_locks", "content_store", "database", "database_move", "devices", "devices_table", "engine", "engine_settings",
    "errors", "events", "events_table", "kinds", "naming", "nodes", "notifications", "outcomes", "placeholders",
    "ranged_get", "schema", "socket_splice", "space_access", "tasks", "transfer_context", "triggers",
]
