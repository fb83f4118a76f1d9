"""OpenAPI 3.1 from a function's route table and its pydantic models (never written by hand)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the app hands itself in; importing http here would make a cycle
    from common.http import App

_PARAM = re.compile(r"<(?:[a-z]+:)?([A-Za-z_][A-Za-z0-9_]*)>")
ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "message", "request_id"],
    "properties": {
        "error": {"type": "string"},
        "message": {"type": "string"},
        "request_id": {"type": "string"},
        "details": {},
    },
}
_ERRORS = {
    "400": "bad request",
    "401": "no valid bearer token",
    "403": "the caller lacks the role",
    "404": "not found",
    "409": "conflict",
    "413": "body too large",
    "415": "not JSON",
    "422": "validation error",
}


def _query_parameters(model: Any, schemas: dict[str, Any]) -> list[dict[str, Any]]:
    """One parameter per field of the route's query model, with its type and whether it is required."""
    if model is None:
        return []
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(schema.pop("$defs", {}))
    required = set(schema.get("required", ()))
    params = []
    for name, prop in schema.get("properties", {}).items():
        prop = {k: v for k, v in prop.items() if k != "title"}
        param = {"name": name, "in": "query", "required": name in required}
        if "description" in prop:
            param["description"] = prop.pop("description")
        params.append({**param, "schema": prop})
    return params


def document(app: App) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA}
    for route in app.routes:
        path = _PARAM.sub(r"{\1}", route.path)
        op: dict[str, Any] = {"summary": route.summary, "operationId": route.name}
        params = [
            {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
            for n in _PARAM.findall(route.path)
        ]
        params += _query_parameters(route.query, schemas)
        if params:
            op["parameters"] = params
        if route.adapter is not None:
            schema = route.adapter.json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(schema.pop("$defs", {}))
            if isinstance(route.body, type):  # a model class: one named schema, referenced
                schemas[route.body.__name__] = schema
                schema = {"$ref": f"#/components/schemas/{route.body.__name__}"}
            op["requestBody"] = {
                "required": route.body_required,
                "content": {"application/json": {"schema": schema}},
            }
        elif route.multipart:
            op["requestBody"] = {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "name": {"type": "string"},
                                "attachment": {"type": "string", "format": "binary"},
                            },
                        }
                    }
                },
            }
        ok: dict[str, Any] = {"description": "success"}
        if route.status != 204:
            ok["content"] = {"application/json": {"schema": {}}}
        responses: dict[str, Any] = {str(route.status): ok}
        if route.role is not None:
            op["security"] = [{"bearer": []}]
            op["x-gatehouse-role"] = route.role.describe
            for status, text in _ERRORS.items():
                responses[status] = {
                    "description": text,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                }
        op["responses"] = responses
        paths.setdefault(path, {})[route.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"Gatehouse {app.name}",
            "version": app.settings.version,
            "description": app.description,
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
