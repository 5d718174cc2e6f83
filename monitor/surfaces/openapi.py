"""The OpenAPI 3.1 description served at ``/openapi.json`` (kept in sync by a test)."""

from __future__ import annotations

from typing import Any

__all__ = ["OPENAPI"]

_ERR = {
    "description": "error",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}
_DOC = {
    "description": "verdict document",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Verdict"}}},
}
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_AUTH: list[dict[str, list[str]]] = [{"bearer": []}, {"basic": []}]


def _gate(which: str, ok: str) -> dict[str, Any]:
    op = {
        "summary": f"{which} gate: 200 iff the verdict is {ok} (or INCONCLUSIVE resolved to "
        f"{ok}), else 409 (Flagger, shell); 503 if the verdict document is unreadable",
        "responses": {"200": _DOC, "409": _DOC, "404": _ERR, "503": _ERR},
    }
    return {
        "get": op,
        "post": {
            **op,
            "requestBody": {
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/FlaggerPayload"}}
                }
            },
        },
    }


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "bakemon",
        "version": "1",
        "description": "Streaming bake monitor: verdicts for deployment pipelines.",
    },
    "paths": {
        "/v1/bakes": {
            "get": {
                "summary": "list bakes (filter by service, status)",
                "parameters": [
                    {"name": "service", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {
                            "type": "string",
                            "enum": ["PENDING", "PROMOTE", "HALT", "INCONCLUSIVE", "CANCELLED"],
                        },
                    },
                ],
                "responses": {
                    "200": {
                        "description": "bakes",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "bakes": {
                                            "type": "array",
                                            "items": {"$ref": "#/components/schemas/Verdict"},
                                        },
                                        "count": {"type": "integer"},
                                    },
                                }
                            }
                        },
                    }
                },
            },
            "post": {
                "summary": "create a bake (idempotent on the id)",
                "security": _AUTH,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/BakeSpec"}}
                    },
                },
                "responses": {
                    "201": _DOC,
                    "200": _DOC,
                    "400": _ERR,
                    "401": _ERR,
                    "403": _ERR,
                    "409": _ERR,
                    "413": _ERR,
                    "429": _ERR,
                },
            },
        },
        "/v1/bakes/{id}": {
            "get": {
                "summary": "verdict document (always 200 while healthy)",
                "parameters": [_ID],
                "responses": {"200": _DOC, "404": _ERR, "503": _ERR},
            }
        },
        "/v1/bakes/{id}/cancel": {
            "post": {
                "summary": "stop counting traffic for the bake",
                "security": _AUTH,
                "parameters": [_ID],
                "responses": {"200": _DOC, "401": _ERR, "403": _ERR, "404": _ERR},
            }
        },
        "/v1/bakes/{id}/override": {
            "post": {
                "summary": "operator decision, audited (who, why, when); applied by the judge",
                "security": _AUTH,
                "parameters": [_ID],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["status", "by", "reason"],
                                "additionalProperties": False,
                                "properties": {
                                    "status": {
                                        "type": "string",
                                        "enum": ["PROMOTE", "HALT", "INCONCLUSIVE"],
                                    },
                                    "by": {"type": "string"},
                                    "reason": {"type": "string"},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "202": {"description": "accepted"},
                    "400": _ERR,
                    "401": _ERR,
                    "403": _ERR,
                    "404": _ERR,
                },
            }
        },
        "/v1/bakes/stream": {
            "get": {
                "summary": "verdict documents as server-sent events (the web console's live "
                "updates): starts with every current document, then `event: bake` with the "
                "document each time one changes and `event: removed` with its id when one goes; "
                "`id:` is the change number (resume with Last-Event-ID); keepalive comments; "
                "shares the API's cap on open streams",
                "parameters": [
                    {
                        "name": "bake",
                        "in": "query",
                        "schema": {"type": "string"},
                        "description": "only this bake",
                    },
                    {
                        "name": "view",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["full", "summary"]},
                        "description": "summary: without segments, policy, assumptions and the "
                        "latency thresholds' detail",
                    },
                ],
                "responses": {"200": {"description": "text/event-stream"}, "400": _ERR},
            }
        },
        "/v1/bakes/{id}/timeline": {
            "get": {
                "summary": "the evidence over time: <= 500 points (thinned evenly, the newest "
                "100 and every status change kept): event time, tested requests, status, per "
                "metric estimate, bounds, e-values and the HALT threshold, segment findings",
                "parameters": [_ID],
                "responses": {"200": {"description": "timeline"}, "404": _ERR},
            }
        },
        "/v1/verdict": {
            "get": {
                "summary": "verdict of the latest bake of a canary version",
                "parameters": [
                    {
                        "name": "service",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "version",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {"200": _DOC, "400": _ERR, "404": _ERR},
            }
        },
        "/v1/gate/promote/{id}": {
            k: {**v, "parameters": [_ID]} for k, v in _gate("promote", "PROMOTE").items()
        },
        "/v1/gate/rollback/{id}": {
            k: {**v, "parameters": [_ID]} for k, v in _gate("rollback", "HALT").items()
        },
        "/v1/gate/promote": _gate("promote (bake from the Flagger payload)", "PROMOTE"),
        "/v1/gate/rollback": _gate("rollback (bake from the Flagger payload)", "HALT"),
        "/v1/alerts": {
            "get": {
                "summary": "recent alerts (filter by bake, severity; limit)",
                "responses": {"200": {"description": "alerts"}},
            }
        },
        "/v1/alerts/stream": {
            "get": {
                "summary": "alerts as server-sent events; resume with Last-Event-ID",
                "responses": {"200": {"description": "text/event-stream"}},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {"200": {"description": "text exposition format"}},
            }
        },
        "/healthz": {
            "get": {
                "summary": "poll loops advanced recently",
                "responses": {"200": {"description": "ok"}, "503": {"description": "stalled"}},
            }
        },
        "/readyz": {
            "get": {
                "summary": "registry loaded, partitions assigned, state restored",
                "responses": {"200": {"description": "ready"}, "503": {"description": "not ready"}},
            }
        },
        "/": {
            "get": {
                "summary": "the web console (HTML; its files under /console/, the bake page's "
                "markup at /console/fragment/bakes/{id}, which follows the read token rules)",
                "responses": {"200": {"description": "text/html"}},
            }
        },
        "/openapi.json": {
            "get": {"summary": "this document", "responses": {"200": {"description": "OpenAPI"}}}
        },
    },
    "components": {
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            # the token as the password, any user name: for tools that cannot set headers
            # (Flagger's webhooks, from a URL's user info)
            "basic": {"type": "http", "scheme": "basic"},
        },
        "schemas": {
            "Error": {
                "type": "object",
                "properties": {"error": {"type": "string"}, "status": {"type": "integer"}},
            },
            "BakeSpec": {
                "type": "object",
                "required": ["service", "canary", "baseline"],
                "additionalProperties": False,
                "properties": {
                    "id": {"type": "string"},
                    "service": {"type": "string"},
                    "canary": {
                        "oneOf": [
                            {"type": "string"},
                            {"type": "array", "items": {"type": "string"}},
                        ]
                    },
                    "baseline": {
                        "oneOf": [
                            {"type": "string"},
                            {"type": "array", "items": {"type": "string"}},
                        ]
                    },
                    "policy": {"type": "object"},
                    "start": {"type": "number"},
                    "end": {"type": "number"},
                    "created_at": {"type": "string"},
                    "runbook_url": {"type": "string", "format": "uri"},
                },
            },
            "Verdict": {
                "type": "object",
                "required": [
                    "id",
                    "service",
                    "status",
                    "decided",
                    "reasons",
                    "progress",
                    "metrics",
                ],
                "properties": {
                    "id": {"type": "string"},
                    "service": {"type": "string"},
                    "status": {
                        "type": "string",
                        "enum": ["PENDING", "PROMOTE", "HALT", "INCONCLUSIVE", "CANCELLED"],
                    },
                    "decided": {"type": "boolean"},
                    "resolution": {"type": ["string", "null"]},
                    "reasons": {"type": "array", "items": {"type": "string"}},
                    "decision": {
                        "type": ["object", "null"],
                        "description": "Fixed when the bake decides (or is overridden): "
                        "status, reason, at, requests, per metric finding, estimate, lower, "
                        "upper, e_value_halt, halt_needs, e_value_promote; segment (the value "
                        "whose test HALTed), override. Never changes afterwards.",
                    },
                    "live": {
                        "type": ["string", "null"],
                        "description": "Set once decided: progress, metrics and segments "
                        "keep updating; decision holds the figures at the decision.",
                    },
                    "retired_at": {
                        "type": "string",
                        "description": "Present once the bake retired from the live set "
                        "(retention_s after its decision or cancel).",
                    },
                    "progress": {"type": "object"},
                    "progress_text": {"type": "string"},
                    "metrics": {"type": "object"},
                    "stale": {"type": "boolean"},
                },
            },
            "FlaggerPayload": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "namespace": {"type": "string"},
                    "phase": {"type": "string"},
                    "checksum": {"type": "string"},
                    "metadata": {"type": "object"},
                },
            },
        },
    },
}
