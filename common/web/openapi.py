"""OpenAPI 3.1 from a function's route table and its pydantic models (never written by hand).

`document(app)` is one function's document, `combine(documents)` the whole bundle's (served at
the local stack's root and written by `make package`). What each operation says comes from its
route: the summary and description from the handler's docstring, parameters from the path and
the declared query, the body from its model, the success answer from the declared response
model (a free-form JSON value, said so, where the route declares none), and the errors it can
answer from what the pipeline does for that route (common/web/http.py) plus the route's own
`answers=(...)` (a 2xx there is a second success, e.g. 202 for a call carried out as a job).
"""

from __future__ import annotations

import copy
import re
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, TypeAdapter

from common.web import clio

if TYPE_CHECKING:  # the type only: common.web.http imports this module
    from common.web.http import App, Route

_PARAM = re.compile(r"<(?:[a-z]+:)?([A-Za-z_][A-Za-z0-9_]*)>")
_REF = "#/components/schemas/"
ERROR_SCHEMA = {
    "type": "object",
    "description": "The error envelope every failure answers with.",
    "required": ["error", "message", "request_id"],
    "properties": {
        "error": {"type": "string", "description": "A stable code, e.g. `not_found`."},
        "message": {"type": "string", "description": "What went wrong, for a person."},
        "request_id": {"type": "string", "description": "Also in X-Request-Id and in our logs."},
        "details": {"description": "More to say, e.g. the list of validation problems."},
    },
}
# status -> (error code, when); the same table as docs/api.md.
ERRORS: dict[int, tuple[str, str]] = {
    400: ("bad_request", "Malformed JSON, a bad or unknown query parameter, or a bad cursor."),
    401: ("unauthenticated", "No usable bearer token (see WWW-Authenticate)."),
    403: ("forbidden", "The caller is authenticated but lacks the role this needs."),
    404: ("not_found", "No such thing, or one the caller may not know exists."),
    409: ("conflict", "The change clashes with the stored state."),
    413: ("payload_too_large", "The body, a list or a field is over its limit."),
    415: ("unsupported_media_type", "The body is not JSON (or not multipart/form-data where asked)."),
    422: ("validation_error", "The JSON is well formed but not valid for this route."),
    429: ("rate_limited", "Over a rate limit; Retry-After says when to come back."),
    500: ("endpoint_error", "A twin endpoint's own code failed, ran out of memory or gave no JSON."),
    502: ("bad_gateway", "An upstream service failed."),
    503: ("unavailable", "A backend is unavailable or busy; Retry-After says when to retry."),
    504: ("timeout", "The work ran past its time limit and was stopped."),
}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}}
_HEADERS = {
    401: {"WWW-Authenticate": {"description": "`Bearer`, with the reason.", "schema": {"type": "string"}}},
    429: _RETRY_AFTER,
    503: _RETRY_AFTER,
}
ACCEPTED = {
    "description": "Accepted: carried out as a job; Location names it (GET it for the outcome).",
    "headers": {"Location": {"description": "The job's path.", "schema": {"type": "string"}}},
    "content": {"application/json": {"schema": {"type": "object", "description": "Free-form object."}}},
}
FREE_FORM = {"description": "Free-form JSON: this route declares no fixed shape (see docs/api.md)."}
# Answers of the meta routes every App has (common/web/http.py), by handler name.
_META_RESPONSES: dict[str, dict[str, Any]] = {
    "_health": {
        "type": "object",
        "required": ["status", "function", "version"],
        "properties": {
            "status": {"const": "ok"},
            "function": {"type": "string"},
            "version": {"type": "string"},
        },
        "examples": [{"status": "ok", "function": "datasets", "version": "1.0.0"}],
    },
    "_openapi": {"type": "object", "description": "An OpenAPI 3.1 document (free-form object)."},
}
# Example values for path parameters, by name: what the `make dev` demo has.
PATH_EXAMPLES = {
    "name": "hemibrain",
    "email": "researcher@example.com",
    "path": "warehouse.query",
    "key": "17000_20000_18000",
    "entry": "0a1b2c3d",
    "job_id": "0a1b2c3d4e5f",
    "key_id": "0a1b2c3d",
    "deletion_id": "0a1b2c3d",
    "file": "README.txt",
}


def sentences(text: str) -> tuple[str, str]:
    """A docstring's first sentence as a summary (capitalised, ending with a full stop), and
    the whole docstring as one paragraph per blank line, for the description."""
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    first = paragraphs[0] if paragraphs else ""
    match = re.match(r"(.+?[.!?])(\s+[A-Z(`]|$)", first)
    summary = (match.group(1) if match else first).strip()
    summary = summary[:1].upper() + summary[1:]
    if not summary.endswith((".", "!", "?")):
        summary += "."
    return summary, "\n\n".join(paragraphs)


def route_errors(route: Route) -> list[int]:
    """The error statuses the pipeline can answer for this route, and the route's own."""
    found = {400}  # any route: an unknown or malformed query parameter
    if _PARAM.search(route.path):
        found.add(404)  # the thing the path names may not exist
    if route.check is not None:
        found |= {401, 403, 503}  # the token; the role (or a disabled account); the user store
    if route.adapter is not None or route.multipart:
        found |= {413, 415, 422}
    found |= {s for s in route.answers if s >= 400}
    return sorted(found)


def _schema_of(
    model: Any, schemas: dict[str, Any], mode: Literal["validation", "serialization"]
) -> dict[str, Any]:
    """A pydantic type's JSON schema; its definitions go to `schemas`, a model class by name."""
    schema = TypeAdapter(model).json_schema(ref_template=_REF + "{model}", mode=mode)
    for name, definition in {**schema.pop("$defs", {}), **_named(model, schema)}.items():
        if schemas.setdefault(name, definition) != definition:  # one name, two shapes: a wrong document
            raise ValueError(f"two schemas are named {name!r} in one document: rename one model")
    if isinstance(model, type) and issubclass(model, BaseModel):
        return {"$ref": _REF + model.__name__}
    return schema


def _named(model: Any, schema: dict[str, Any]) -> dict[str, Any]:
    """{model's name: its schema} for a model class; {} for any other type."""
    return {model.__name__: schema} if isinstance(model, type) and issubclass(model, BaseModel) else {}


def _query_parameters(route: Route, schemas: dict[str, Any]) -> list[dict[str, Any]]:
    """One parameter per field of the route's query model, typed, required where required."""
    if route.query is None:
        return []
    schema = route.query.model_json_schema(ref_template=_REF + "{model}")
    schemas.update(schema.pop("$defs", {}))
    required = set(schema.get("required", ()))
    out = []
    for name, prop in schema.get("properties", {}).items():
        prop = dict(prop)
        description = prop.pop("description", None)
        prop.pop("title", None)
        param = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if description:
            param["description"] = description
        out.append(param)
    return out


def _error_response(status: int) -> dict[str, Any]:
    code, when = ERRORS[status]
    response: dict[str, Any] = {
        "description": when,
        "content": {
            "application/json": {
                "schema": {"$ref": _REF + "Error"},
                "example": {"error": code, "message": when, "request_id": "5f0c3a9e2b7d4c1f8e6a9b0c1d2e3f40"},
            }
        },
    }
    if status in _HEADERS:
        response["headers"] = _HEADERS[status]
    return response


def _success(route: Route, schemas: dict[str, Any]) -> dict[str, Any]:
    if route.status == 204:
        return {"description": "Done; no body."}
    model = getattr(route, "response", None)
    name = route.handler.__name__
    if model is not None:
        schema = _schema_of(model, schemas, "serialization")
    else:
        schema = _META_RESPONSES.get(name, FREE_FORM)
    return {"description": "Success.", "content": {"application/json": {"schema": schema}}}


def _operation(app: App, route: Route, schemas: dict[str, Any], taken: set[str]) -> dict[str, Any]:
    summary, description = sentences(route.doc or route.handler.__doc__ or route.handler.__name__)
    operation_id = route.name
    if operation_id in taken:  # one handler on two routes
        operation_id += "_" + route.method.lower()
    taken.add(operation_id)
    tags = [app.name, clio.TAG] if route.clio else [app.name]
    op: dict[str, Any] = {"tags": tags, "summary": summary, "operationId": operation_id}
    if description != summary:
        op["description"] = description
    params = [
        {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
        | ({"example": PATH_EXAMPLES[n]} if n in PATH_EXAMPLES else {})
        for n in _PARAM.findall(route.path)
    ]
    params += _query_parameters(route, schemas)
    if params:
        op["parameters"] = params
    if route.adapter is not None:
        op["requestBody"] = {
            "required": route.body_required,
            "content": {"application/json": {"schema": _schema_of(route.body, schemas, "validation")}},
        }
    elif route.multipart:
        op["requestBody"] = {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["attachment"],
                        "properties": {
                            "name": {
                                "type": "string",
                                "description": "The file name (default: the upload's).",
                            },
                            "attachment": {"type": "string", "format": "binary"},
                        },
                    }
                }
            },
        }
    responses = {str(route.status): _success(route, schemas)}
    for status in route.answers:
        if status < 400:
            responses[str(status)] = ACCEPTED if status == 202 else _success(route, schemas)
    responses |= {
        str(status): {"$ref": f"#/components/responses/{ERRORS[status][0]}"} for status in route_errors(route)
    }
    op["responses"] = responses
    if route.check is not None:
        op["security"] = [{"bearer": []}]
        op["x-gatehouse-role"] = route.check.describe
    else:
        op["security"] = []  # public
    return op


def document(app: App, server: str = "/") -> dict[str, Any]:
    """One function's document. `server` is where its paths are served: by default the host
    that served the document (a relative URL), which is right behind the gateway and locally."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA}
    taken: set[str] = set()
    for route in app.routes:
        if "/_docs" in route.path:  # the HTML page and its assets are not part of the API
            continue
        path = _PARAM.sub(r"{\1}", route.path)
        paths.setdefault(path, {})[route.method.lower()] = _operation(app, route, schemas, taken)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"Gatehouse {app.name}",
            "version": app.settings.version,
            "description": app.description,
        },
        "servers": [{"url": server, "description": "This deployment."}],
        "tags": [{"name": app.name, "description": app.description}]
        + (
            [{"name": clio.TAG, "description": clio.TAG_DESCRIPTION}]
            if any(r.clio for r in app.routes)
            else []
        ),
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": {ERRORS[status][0]: _error_response(status) for status in ERRORS},
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A Google ID token, a Gatehouse API key (ghk_...) or, locally, "
                    "a dev token from `make token`.",
                }
            },
        },
    }


def combine(documents: list[dict[str, Any]], *, version: str, server: str = "/") -> dict[str, Any]:
    """One document for the whole bundle. A schema name two functions use for different shapes
    is kept apart as `<function>.<name>`; operation ids become `<function>.<id>`."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    tags = []
    for doc in documents:
        doc = copy.deepcopy(doc)
        function = doc["tags"][0]["name"]
        tags += [tag for tag in doc["tags"] if tag not in tags]
        own = doc["components"]["schemas"]
        renames = {
            _REF + name: f"{_REF}{function}.{name}"
            for name, schema in own.items()
            if name in schemas and schemas[name] != schema
        }
        for name, schema in _rename_refs(own, renames).items():
            schemas[renames.get(_REF + name, _REF + name).removeprefix(_REF)] = schema
        for path, operations in _rename_refs(doc["paths"], renames).items():
            for op in operations.values():
                op["operationId"] = f"{function}.{op['operationId']}"
            paths[path] = operations
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Gatehouse",
            "version": version,
            "description": "Governed HTTPS access to research datasets: every function of the bundle.",
        },
        "servers": [{"url": server, "description": "This deployment."}],
        "tags": tags,
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": {ERRORS[status][0]: _error_response(status) for status in ERRORS},
            "securitySchemes": documents[0]["components"]["securitySchemes"] if documents else {},
        },
    }


def _rename_refs(value: Any, renames: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {
            k: renames.get(v, v) if k == "$ref" and isinstance(v, str) else _rename_refs(v, renames)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_rename_refs(v, renames) for v in value]
    return value
