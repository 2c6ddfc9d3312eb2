"""The OpenAPI 3.1 description of /api/v1/, served at /api/v1/openapi.json (a test walks it)."""

from __future__ import annotations

from engine.kinds import SourceKind, TaskState

_ERROR = {"description": "Error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_TASK = {"description": "The task", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Task"}}}}
_REFUSED_ORIGIN = {**_ERROR, "description": "The Origin (or Referer) header names another site"}
_NOT_JSON = {**_ERROR, "description": "The body is not sent as application/json"}
_THROTTLED = {**_ERROR, "description": "Too many wrong passwords; the Retry-After header says when to try again"}
_TASK_ID = {"name": "task_id", "in": "path", "required": True, "schema": {"type": "integer"}}
_SHARE = {"description": "The share", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Share"}}}}
_SHARE_ID = {"name": "share_id", "in": "path", "required": True, "schema": {"type": "string"}}

OPENAPI = {
    "openapi": "3.1.0",
    "info": {"title": "fetchdrive API", "version": "1"},
    "components": {
        "securitySchemes": {"basic": {"type": "http", "scheme": "basic"}},
        "schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
            "Task": {
                "type": "object",
                "required": ["id", "source", "state", "bytes_done", "bytes_total", "path", "error"],
                "properties": {
                    "id": {"type": "integer"},
                    "source": {"type": "string", "description": "URL or content ID"},
                    "kind": {"enum": list(SourceKind)},
                    "state": {"enum": list(TaskState)},
                    "name": {"type": "string"},
                    "folder": {"type": "string"},
                    "trigger": {"type": ["string", "null"]},
                    "bytes_done": {"type": "integer"},
                    "bytes_total": {"type": ["integer", "null"]},
                    "speed": {"type": ["number", "null"], "description": "bytes per second while downloading"},
                    "eta": {"type": ["number", "null"], "description": "seconds left while downloading"},
                    "path": {"type": ["string", "null"], "description": "the file in the drive once done"},
                    "error": {"type": ["string", "null"]},
                    "instant": {"type": "boolean", "description": "delivered from content the server held"},
                    "sha256": {"type": ["string", "null"],
                               "description": "the content's SHA-256; may follow a moment after the state is done"},
                    "attempts": {"type": "integer"},
                    "created_at": {"type": "number"},
                    "updated_at": {"type": "number"},
                    "finished_at": {"type": ["number", "null"]},
                    "superseded_by": {"type": ["integer", "null"],
                                      "description": "a later task of the same trigger and source that finished; "
                                                     "such failures are left out of the list and cannot be retried"},
                },
            },
            "Share": {
                "type": "object",
                "required": ["id", "url", "expires_at"],
                "properties": {
                    "id": {"type": "string"},
                    "url": {"type": "string", "description": "the public link; anyone who has it can read what it shares"},
                    "path": {"type": "string"},
                    "is_folder": {"type": "boolean"},
                    "exists": {"type": "boolean", "description": "false once the shared path is gone from the drive"},
                    "created_at": {"type": "number"},
                    "expires_at": {"type": ["number", "null"]},
                    "expired": {"type": "boolean"},
                    "has_password": {"type": "boolean"},
                },
            },
            "NewShare": {
                "type": "object",
                "required": ["path"],
                "properties": {
                    "path": {"type": "string", "description": "a file or folder of the caller's drive"},
                    "expires_in": {"type": "integer", "minimum": 1, "description": "seconds until the link stops working"},
                    "password": {"type": "string", "minLength": 8, "description": "asked with HTTP Basic, any user name"},
                },
            },
            "NewTask": {
                "type": "object",
                "properties": {
                    "url": {"type": "string"},
                    "id": {"type": "string"},
                    "filename": {"type": "string"},
                    "sha256": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
                    "folder": {"type": "string", "description": "a folder inside downloads/"},
                },
            },
        },
    },
    "security": [{"basic": []}],
    "paths": {
        "/api/v1/tasks": {
            "get": {
                "summary": "The caller's tasks, newest first, without failures a later task made good",
                "parameters": [
                    {"name": "state", "in": "query", "schema": {"type": "string"}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                    {"name": "cursor", "in": "query", "schema": {"type": "integer"}},
                ],
                "responses": {
                    "200": {"description": "Tasks; a Link header with rel=next points to the next page",
                            "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/Task"}}}}},
                    "400": _ERROR, "401": _ERROR,
                },
            },
            "post": {
                "summary": "Add a download, as a trigger file would",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NewTask"}}}},
                "responses": {"201": _TASK, "400": _ERROR, "401": _ERROR, "403": _REFUSED_ORIGIN, "415": _NOT_JSON,
                              "429": _THROTTLED, "507": _ERROR},
            },
        },
        "/api/v1/tasks/{task_id}": {
            "get": {"summary": "One task", "parameters": [_TASK_ID], "responses": {"200": _TASK, "401": _ERROR, "404": _ERROR}},
            "delete": {"summary": "Cancel a task", "parameters": [_TASK_ID],
                       "responses": {"200": _TASK, "401": _ERROR, "403": _REFUSED_ORIGIN, "404": _ERROR, "409": _ERROR}},
        },
        "/api/v1/tasks/{task_id}/retry": {
            "post": {"summary": "Retry a failed or cancelled task", "parameters": [_TASK_ID],
                     "responses": {"200": _TASK, "401": _ERROR, "403": _REFUSED_ORIGIN, "404": _ERROR, "409": _ERROR}},
        },
        "/api/v1/notifications": {
            "get": {
                "summary": "The caller's notification targets (from .fetchdrive/notify.txt), secrets masked",
                "responses": {
                    "200": {"description": "Masked Apprise URLs", "content": {"application/json": {"schema": {
                        "type": "object", "properties": {"targets": {"type": "array", "items": {"type": "string"}}},
                    }}}},
                    "401": _ERROR,
                },
            },
        },
        "/api/v1/notifications/test": {
            "post": {
                "summary": "Send a test message to each notification target now",
                "responses": {
                    "200": {"description": "How each target answered", "content": {"application/json": {"schema": {
                        "type": "object", "properties": {"results": {"type": "array", "items": {
                            "type": "object",
                            "properties": {"target": {"type": "string"}, "ok": {"type": "boolean"},
                                           "error": {"type": ["string", "null"]}},
                        }}},
                    }}}},
                    "401": _ERROR, "409": _ERROR,
                },
            },
        },
        "/api/v1/shares": {
            "get": {"summary": "The caller's share links, newest first",
                    "responses": {"200": {"description": "Shares", "content": {"application/json": {"schema": {
                        "type": "array", "items": {"$ref": "#/components/schemas/Share"}}}}}, "401": _ERROR}},
            "post": {"summary": "Make a share link",
                     "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NewShare"}}}},
                     "responses": {"201": _SHARE, "400": _ERROR, "401": _ERROR, "404": _ERROR, "409": _ERROR}},
        },
        "/api/v1/shares/{share_id}": {
            "get": {"summary": "One share link", "parameters": [_SHARE_ID], "responses": {"200": _SHARE, "401": _ERROR, "404": _ERROR}},
            "delete": {"summary": "Revoke a share link", "parameters": [_SHARE_ID],
                       "responses": {"200": {"description": "Revoked"}, "401": _ERROR, "404": _ERROR}},
        },
        "/api/v1/me": {
            "get": {
                "summary": "The caller and their quota",
                "responses": {
                    "200": {"description": "User and quota", "content": {"application/json": {"schema": {
                        "type": "object",
                        "properties": {"user": {"type": "string"}, "used_bytes": {"type": "integer"},
                                       "quota_bytes": {"type": ["integer", "null"]}, "available_bytes": {"type": ["integer", "null"]}},
                    }}}},
                    "401": _ERROR,
                },
            },
        },
    },
}

_DEVICE = {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"}}
_DELIVERY = {"type": "object", "properties": {"id": {"type": "integer"}, "device": {"type": "string"},
                                              "path": {"type": "string"}, "created_at": {"type": "number"}}}
_JSON = "application/json"
OPENAPI["paths"].update({
    "/api/v1/events": {
        "get": {
            "summary": "The caller's live events as Server-Sent Events (task.created, task.state, task.progress, "
                       "task.done, task.failed, task.cancelled, file.created, file.changed, file.moved, file.deleted, "
                       "device.send; ready and resync carry the newest event number)",
            "parameters": [{"name": "Last-Event-ID", "in": "header", "schema": {"type": "integer"}},
                           {"name": "last_event_id", "in": "query", "schema": {"type": "integer"}},
                           {"name": "device", "in": "query", "schema": {"type": "string"},
                            "description": "the device following this stream: listed as online, seen at each keep-alive"}],
            "responses": {"200": {"description": "text/event-stream", "content": {"text/event-stream": {}}},
                          "400": _ERROR, "401": _ERROR, "404": _ERROR, "429": _ERROR},
        },
    },
    "/api/v1/devices": {
        "get": {"summary": "The caller's devices and when each was last seen", "responses": {
            "200": {"description": "Devices", "content": {_JSON: {"schema": {"type": "array", "items": {
                "type": "object", "properties": {"name": {"type": "string"}, "created_at": {"type": "number"},
                                                 "last_seen": {"type": ["number", "null"]}, "pending": {"type": "integer"},
                                                 "online": {"type": "boolean"}}}}}}},
            "401": _ERROR}},
    },
    "/api/v1/devices/{name}": {
        "put": {"summary": "Register a device (or mark it seen)", "parameters": [_DEVICE],
                "responses": {"200": {"description": "Seen"}, "201": {"description": "Registered"}, "400": _ERROR, "401": _ERROR}},
        "delete": {"summary": "Forget a device and its undelivered files", "parameters": [_DEVICE],
                   "responses": {"200": {"description": "Removed"}, "401": _ERROR, "404": _ERROR}},
    },
    "/api/v1/devices/{name}/send": {
        "post": {"summary": "Send a file of the drive to the device", "parameters": [_DEVICE],
                 "requestBody": {"required": True, "content": {_JSON: {"schema": {
                     "type": "object", "required": ["path"], "properties": {"path": {"type": "string"}}}}}},
                 "responses": {"201": {"description": "Queued", "content": {_JSON: {"schema": _DELIVERY}}},
                               "400": _ERROR, "401": _ERROR, "404": _ERROR}},
    },
    "/api/v1/devices/{name}/deliveries": {
        "get": {"summary": "Files the device still has to fetch (marks it seen)", "parameters": [_DEVICE],
                "responses": {"200": {"description": "Deliveries", "content": {_JSON: {"schema": {
                    "type": "array", "items": _DELIVERY}}}}, "401": _ERROR, "404": _ERROR}},
    },
    "/api/v1/devices/{name}/ack": {
        "post": {"summary": "The device has the file", "parameters": [_DEVICE],
                 "requestBody": {"required": True, "content": {_JSON: {"schema": {
                     "type": "object", "required": ["delivery"], "properties": {"delivery": {"type": "integer"}}}}}},
                 "responses": {"200": {"description": "Delivered"}, "400": _ERROR, "401": _ERROR, "404": _ERROR}},
    },
})
