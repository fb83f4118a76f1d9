"""Twin endpoint code, checked when it is defined (SPEC §3 twins): pure analysis, no I/O but the
list of allowed libraries.

A side's `code` is the source of one function `def name(context, <keyword params>)`; each helper
is the source of one more function. The keyword parameters become a JSON schema (what views
show and what arguments are checked against before anything runs); every import must name the
standard library or a library the twins function declares for endpoint code.
"""

from __future__ import annotations

import ast
import functools
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any, TypeVar

_HERE = os.path.dirname(os.path.abspath(__file__))
# The twins function's endpoint_requirements.txt: beside this module in the repository, beside
# main.py at the root of the deployed archive (tools/package.py), two folders up from here.
ENDPOINT_REQUIREMENTS = os.path.join(_HERE, "endpoint_requirements.txt")
_ARCHIVE_ENDPOINT_REQUIREMENTS = os.path.join(
    os.path.dirname(os.path.dirname(_HERE)), "endpoint_requirements.txt"
)

# Simple annotations and the JSON schema of the values they accept.
_TYPES = {
    "str": {"type": "string"},
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "bool": {"type": "boolean"},
    "list": {"type": "array"},
    "dict": {"type": "object"},
    "None": {"type": "null"},
    "Any": {},
    "object": {},
}
T = TypeVar("T")
_CONTAINERS = {"list": "array", "List": "array", "dict": "object", "Dict": "object"}


class CodeError(ValueError):
    """Source that cannot be an endpoint: `message`, and the `line` it is on (when known)."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(f"line {line}: {message}" if line else message)
        self.message, self.line = message, line


@dataclass(frozen=True)
class Definition:
    name: str
    parameters: dict[str, Any]  # JSON schema of the keyword parameters (`context` excluded)


def analyse(code: str, helpers: list[str], allowed_modules: frozenset[str]) -> Definition:
    """The definition of `code`, after checking it and its helpers; CodeError otherwise."""
    tree = _parse(code)
    main = _one_function(tree, "the code")
    names = {main.name}
    trees = [tree]
    for index, helper in enumerate(helpers):
        helper_tree = _parse(helper, f"helper {index + 1}")
        function = _one_function(helper_tree, f"helper {index + 1}")
        if function.name in names:
            raise CodeError(
                f"helper {index + 1}: the name {function.name!r} is defined twice", function.lineno
            )
        names.add(function.name)
        trees.append(helper_tree)
    for index, source_tree in enumerate(trees):
        where = "" if index == 0 else f"helper {index}: "
        _check_imports(source_tree, allowed_modules, where)
    return Definition(main.name, _nested(lambda: _parameters(main)))


def analyse_request(code: str, names: list[str], allowed_modules: frozenset[str]) -> str:
    """The function name of request code `def f(<one parameter per endpoint name>)`, after
    checking it takes exactly `names`, imports only what endpoint code may, and does not make
    code at run time (`exec`, `eval`, `compile`, `__import__`, also reached through `builtins`);
    CodeError otherwise.

    These checks help honest authors: the owners approve the code they read, so code that runs
    other source is refused before it reaches them, with the line. They are not a security
    boundary (Python offers endless ways around any static check) and nothing relies on them
    for safety: the owners' review and the sandbox worker are what protect the private data."""
    tree = _parse(code)
    main = _one_function(tree, "the code")
    args = main.args
    if (
        args.posonlyargs
        or args.vararg
        or args.kwarg
        or args.defaults
        or any(d is not None for d in args.kw_defaults)
    ):
        raise CodeError(
            f"{main.name} takes one plain parameter per endpoint "
            "(no defaults, positional-only, *args or **kwargs)",
            main.lineno,
        )
    taken = [a.arg for a in [*args.args, *args.kwonlyargs]]
    if sorted(taken) != sorted(names):
        raise CodeError(
            f"{main.name} must take exactly the endpoints' names as parameters: "
            f"{', '.join(sorted(names))} (it takes {', '.join(taken) or 'none'})",
            main.lineno,
        )
    _check_dynamic_code(tree, set(taken))
    _check_imports(tree, allowed_modules, "")
    return main.name


def same_parameters(a: Definition, b: Definition) -> bool:
    return a.parameters == b.parameters


def check_arguments(definition: Definition, args: dict[str, Any]) -> list[dict[str, Any]]:
    """What is wrong with `args` for `definition` (empty when nothing): unknown, missing and
    mistyped arguments. Strict: no coercion, a bool is not a number, a float is not an int."""
    schema = definition.parameters
    problems = [
        {"loc": [name], "message": "missing argument", "type": "missing"}
        for name in schema.get("required", [])
        if name not in args
    ]
    for name, value in args.items():
        expected = schema["properties"].get(name)
        if expected is None:
            problems.append({"loc": [name], "message": "unknown argument", "type": "extra_forbidden"})
        elif not _matches(value, expected):
            problems.append(
                {"loc": [name], "message": f"expected {_describe(expected)}", "type": "wrong_type"}
            )
    return problems


@functools.cache
def allowed_modules_for_endpoints() -> frozenset[str]:
    """Import names of the libraries endpoint code may use (functions/twins/endpoint_requirements.txt,
    packaged with the twins function)."""
    path = ENDPOINT_REQUIREMENTS if os.path.isfile(ENDPOINT_REQUIREMENTS) else _ARCHIVE_ENDPOINT_REQUIREMENTS
    if not os.path.isfile(path):
        return frozenset()
    with open(path) as f:
        dists = [line.split("#")[0].split("==")[0].split("[")[0].strip() for line in f]
    return frozenset(_import_names(d) for d in dists if d)


def _import_names(distribution: str) -> str:
    """The top-level import name of a distribution (boto3 -> boto3, PyYAML -> yaml)."""
    wanted = distribution.lower().replace("_", "-")
    for module, dists in metadata.packages_distributions().items():
        if any(d.lower().replace("_", "-") == wanted for d in dists) and not module.startswith("_"):
            return module
    return distribution.lower().replace("-", "_")


# -- the pieces -------------------------------------------------------------------------------


def _parse(source: str, where: str = "the code") -> ast.Module:
    """The source's tree, once it is known to compile as the worker will compile it (so what
    only the compiler refuses is refused here too, with its line)."""
    prefix = "" if where == "the code" else f"{where}: "
    try:
        tree = _nested(lambda: ast.parse(source), where)
        _nested(lambda: compile(tree, "<code>", "exec", dont_inherit=True), where)
    except SyntaxError as exc:
        raise CodeError(f"{prefix}{exc.msg}", exc.lineno) from None
    except ValueError as exc:  # e.g. a NUL byte
        raise CodeError(f"{where}: {exc}") from None
    return tree


def _nested(step: Callable[[], T], where: str = "the code") -> T:
    """`step()`; source nested deeper than Python's parser, compiler or our own recursive checks
    can follow (`-` * 100000 + `1`, thousands of nested calls) is a CodeError, not a crash: the
    parser reports it as MemoryError or RecursionError, the compiler as RecursionError."""
    try:
        return step()
    except (RecursionError, MemoryError):
        raise CodeError(
            f"{where} is nested too deeply for Python to compile; split deep expressions into steps"
        ) from None


def _one_function(tree: ast.Module, where: str) -> ast.FunctionDef:
    """The module's single function; only imports and a docstring may stand beside it."""
    functions = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            functions.append(node)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        elif (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            continue
        else:
            raise CodeError(
                f"{where} may hold one function definition (and imports), not a {type(node).__name__}",
                node.lineno,
            )
    if len(functions) != 1:
        line = functions[1].lineno if len(functions) > 1 else None
        raise CodeError(f"{where} must define exactly one function, not {len(functions)}", line)
    return functions[0]


def _check_imports(tree: ast.Module, allowed: frozenset[str], where: str) -> None:
    for node in ast.walk(tree):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                raise CodeError(f"{where}relative imports are not allowed", node.lineno)
            modules = [node.module or ""]
        elif isinstance(node, ast.Call) and _is_dynamic_import(node.func):
            first = node.args[0] if node.args else None
            if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
                raise CodeError(f"{where}imports must name their module literally", node.lineno)
            modules = [first.value]
        for module in modules:
            top = module.split(".")[0]
            if top not in sys.stdlib_module_names and top not in allowed:
                allowed_list = ", ".join(sorted(allowed)) or "none"
                raise CodeError(
                    f"{where}import of {module!r} is not allowed: endpoint code may import the "
                    f"standard library and {allowed_list}",
                    getattr(node, "lineno", 0),  # every node that imports has one
                )


# Request code may not run source its owners never read (see analyse_request: a help, not a boundary).
_DYNAMIC = ("exec", "eval", "compile", "__import__")


def _check_dynamic_code(tree: ast.Module, parameters: set[str]) -> None:
    """Refuse the plain ways of making code at run time: `eval(...)`, `f = exec`,
    `builtins.compile`, `__builtins__["eval"]`, `getattr(builtins, "exec")`, `from builtins
    import eval`. A name the code binds itself (an endpoint parameter called `compile`, say) is
    its own, not the built-in; `re.compile` is not `builtins.compile`."""
    bound = set(parameters)
    builtins_names = {"builtins", "__builtins__"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            bound.add(node.id)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "builtins":
                    builtins_names.add(alias.asname or alias.name)
                else:
                    bound.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.module != "builtins":
            bound.update(alias.asname or alias.name for alias in node.names)
    for node in ast.walk(tree):
        used: str | None = None
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id not in bound:
            used = node.id if node.id in _DYNAMIC else None
        elif isinstance(node, ast.Attribute) and _named(node.value, builtins_names):
            used = node.attr if node.attr in _DYNAMIC else None
        elif isinstance(node, ast.Subscript) and _named(node.value, builtins_names):
            used = _text(node.slice)
        elif (
            isinstance(node, ast.Call)
            and _named(node.func, {"getattr"})
            and len(node.args) >= 2
            and _named(node.args[0], builtins_names)
        ):
            used = _text(node.args[1])
        elif isinstance(node, ast.ImportFrom) and node.module == "builtins":
            used = next((a.name for a in node.names if a.name in _DYNAMIC or a.name == "*"), None)
        if used in _DYNAMIC or used == "*":
            raise CodeError(
                f"request code may not use {'everything from builtins' if used == '*' else used}: "
                "exec, eval, compile and __import__ run source the owners never read; "
                "write the code out (imports as import statements)",
                getattr(node, "lineno", None),
            )


def _named(node: ast.expr, names: set[str]) -> bool:
    return isinstance(node, ast.Name) and node.id in names


def _text(node: ast.expr) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _is_dynamic_import(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in ("__import__", "import_module")
    return isinstance(func, ast.Attribute) and func.attr in ("import_module", "__import__")


def _parameters(function: ast.FunctionDef) -> dict[str, Any]:
    args = function.args
    if args.posonlyargs or args.vararg or args.kwarg:
        raise CodeError(
            f"{function.name} takes `context` and keyword parameters only "
            "(no positional-only, *args or **kwargs)",
            function.lineno,
        )
    if not args.args or args.args[0].arg != "context":
        raise CodeError(f"the first parameter of {function.name} must be `context`", function.lineno)
    positional = args.args[1:]
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    if len(args.defaults) > len(positional):  # the default belongs to `context`
        raise CodeError("`context` cannot have a default", function.lineno)
    pairs = list(zip(positional, defaults)) + list(zip(args.kwonlyargs, args.kw_defaults))
    properties: dict[str, Any] = {}
    required: list[str] = []
    for arg, default in pairs:
        schema = _schema(arg.annotation, arg.lineno) if arg.annotation is not None else {}
        if default is None:
            required.append(arg.arg)
        else:
            try:
                value = ast.literal_eval(default)
            except ValueError:
                raise CodeError(
                    f"the default of {arg.arg!r} must be a literal value", default.lineno
                ) from None
            if not _matches(value, schema):
                raise CodeError(f"the default of {arg.arg!r} is not {_describe(schema)}", default.lineno)
            schema = {**schema, "default": value}
        properties[arg.arg] = schema
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


def _schema(node: ast.expr, line: int) -> dict[str, Any]:
    """The JSON schema of a simple annotation: str, int, float, bool, list, dict, list[X],
    dict[str, X], X | None, Optional[X], Any."""
    if isinstance(node, ast.Constant) and node.value is None:
        return {"type": "null"}
    if isinstance(node, ast.Constant) and isinstance(node.value, str):  # a string annotation
        try:
            return _schema(ast.parse(node.value, mode="eval").body, line)
        except SyntaxError:
            raise CodeError(f"the annotation {node.value!r} is not understood", line) from None
    name = _name(node)
    if name in _TYPES:
        return dict(_TYPES[name])
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _any_of(_schema(node.left, line), _schema(node.right, line))
    if isinstance(node, ast.Subscript):
        outer, inner = _name(node.value), node.slice
        args = inner.elts if isinstance(inner, ast.Tuple) else [inner]
        if outer == "Optional" and len(args) == 1:
            return _any_of(_schema(args[0], line), {"type": "null"})
        if outer == "Union":
            return _any_of(*(_schema(a, line) for a in args))
        if outer in ("list", "List") and len(args) == 1:
            return {"type": "array", "items": _schema(args[0], line)}
        if outer in ("dict", "Dict") and len(args) == 2 and _name(args[0]) == "str":
            return {"type": "object", "additionalProperties": _schema(args[1], line)}
    raise CodeError(
        f"the annotation {ast.unparse(node)!r} is not one of str, int, float, bool, list, "
        "dict, list[X], dict[str, X], X | None, Any",
        line,
    )


def _name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):  # typing.Optional, t.Any
        return node.attr
    return None


def _any_of(*schemas: dict[str, Any]) -> dict[str, Any]:
    flat: list[dict[str, Any]] = []
    for schema in schemas:
        flat.extend(schema.get("anyOf", [schema]))
    return {} if any(s == {} for s in flat) else {"anyOf": flat}


def _matches(value: Any, schema: dict[str, Any]) -> bool:
    if "anyOf" in schema:
        return any(_matches(value, s) for s in schema["anyOf"])
    kind = schema.get("type")
    if kind is None:
        return True
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "null":
        return value is None
    if kind == "array":
        return isinstance(value, list) and all(_matches(v, schema.get("items", {})) for v in value)
    if kind == "object":
        return (
            isinstance(value, dict)
            and all(isinstance(k, str) for k in value)
            and all(_matches(v, schema.get("additionalProperties", {})) for v in value.values())
        )
    return False


def _describe(schema: dict[str, Any]) -> str:
    if "anyOf" in schema:
        return " or ".join(_describe(s) for s in schema["anyOf"])
    kind = schema.get("type", "any JSON value")
    if kind == "array" and schema.get("items"):
        return f"array of {_describe(schema['items'])}"
    if (
        kind == "object"
        and isinstance(schema.get("additionalProperties"), dict)
        and schema["additionalProperties"]
    ):
        return f"object of {_describe(schema['additionalProperties'])}"
    return {
        "integer": "an integer",
        "number": "a number",
        "string": "a string",
        "boolean": "a boolean",
        "null": "null",
        "array": "an array",
        "object": "an object",
    }.get(kind, kind)
