"""`make package`: one deployable source archive per function, `dist/<name>.zip`.

Each archive holds the function's `main.py` at its root (Cloud Functions wants it there), the
function's own modules (`functions/<name>/*.py` but tests) at their own path beside it, so that
`from functions.<name> import x` works the same in the archive, the tests and the local stack,
the `common/` modules they reach through their imports (lazy ones included), and a
requirements.txt listing, pinned as in the project's requirements.txt, exactly the distributions
those imports need, plus functions-framework, which serves it.

`check(folder)` is the exact requirement check the tests run on every unpacked archive: every
module any file imports is in the archive or the standard library, or is provided by a listed
distribution or by one of their dependencies (from the installed packages' own metadata), and
every listed distribution is needed; given the function's name, also that every module of its
own is there (a module read by path, as the twins' sandbox reads its worker, is imported by none).

`make package` also writes `dist/openapi.json`: the whole bundle's OpenAPI document (the one the
local stack serves at its root), for the API gateway's public URL (`--server`, default "/").

A function may also declare libraries for code it runs but does not import itself (the twins
function's endpoint code): `functions/<name>/endpoint_requirements.txt`, pinned lines. The file
goes into the archive next to `main.py` and its lines into requirements.txt.
"""

from __future__ import annotations

import argparse
import ast
import functools
import os
import re
import sys
import zipfile
from importlib import metadata

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNTIME = "functions-framework"  # serves every function; imported by none
ENDPOINT_REQUIREMENTS = "endpoint_requirements.txt"  # libraries for code the function runs (twins)
LOCAL_PACKAGE = "common"
FUNCTIONS = "functions"  # functions.<name>.x: a function's own module, local like common's
LOCAL = (LOCAL_PACKAGE, FUNCTIONS)


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imports_of(path: str) -> set[tuple[str, ...]]:
    """What a file imports anywhere (inside functions too), each import as the dotted names it
    may be, most specific first: `from x import y` is the module `x.y`, or `y` from `x`."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    package = os.path.basename(os.path.dirname(path))
    found: set[tuple[str, ...]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update((alias.name,) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: only inside common/
                base = f"{package}.{base}".rstrip(".")
            if base != "__future__":
                found.update((f"{base}.{alias.name}", base) for alias in node.names)
    return found


def own_modules(name: str, root: str = ROOT) -> list[str]:
    """The modules a function owns besides main.py: functions/<name>/*.py, tests excepted."""
    folder = os.path.join(root, FUNCTIONS, name)
    return sorted(
        os.path.join(folder, f)
        for f in os.listdir(folder)
        if f.endswith(".py")
        and f != "main.py"
        and not (f.startswith("test_") or f.endswith("_test.py") or f == "conftest.py")
    )


def _local_file(root: str, dotted: str) -> str | None:
    """The file of `common` / `common.x` / `functions.<name>.x` under `root`, if there is one."""
    parts = dotted.split(".")
    if parts[0] not in LOCAL:
        return None
    for candidate in (os.path.join(root, *parts) + ".py", os.path.join(root, *parts, "__init__.py")):
        if os.path.isfile(candidate):
            return candidate
    return None


def _local_module(root: str, names: tuple[str, ...]) -> str | None:
    """The file of a local import: `from common.storage import store` needs
    common/storage/store.py (a package's __init__.py defines nothing, so it never stands in for
    a module of the package); `from common.web.http import App` needs common/web/http.py; `from
    functions.twins import calls` needs functions/twins/calls.py."""
    for n, name in enumerate(names):
        found = _local_file(root, name)
        if found and (n == 0 or os.path.basename(found) != "__init__.py"):
            return found
    return None


def _packages_of(root: str, path: str) -> list[str]:
    """The __init__.py files of the packages holding `path` (common/__init__.py for common/x.py;
    functions/ and its folders are namespace packages, with none)."""
    found, folder = [], os.path.dirname(path)
    while os.path.isfile(os.path.join(folder, "__init__.py")) and folder != root:
        found.append(os.path.join(folder, "__init__.py"))
        folder = os.path.dirname(folder)
    return found


def reach(root: str, *starts: str) -> tuple[set[str], set[tuple[str, ...]]]:
    """Local files reachable from `starts` (main.py and a function's own modules, relative to
    `root`), and the external imports."""
    files, external, todo = set(), set(), list(starts)
    while todo:
        path = todo.pop()
        if path in files:
            continue
        files.add(path)
        for names in imports_of(path):
            top = names[0].split(".")[0]
            if top in LOCAL:
                local = _local_module(root, names)
                if local:
                    todo += [local, *_packages_of(root, local)]
            elif top not in sys.stdlib_module_names:
                external.add(names)
    return files, external


@functools.cache
def _module_owners() -> dict[str, str]:
    """Dotted module or package name -> the installed distribution that provides it."""
    owners: dict[str, str] = {}
    for dist in metadata.distributions():
        for file in dist.files or ():
            parts = file.parts
            if not parts or parts[0].endswith((".dist-info", ".data")) or parts[0] == "..":
                continue
            if file.name == "__init__.py":
                owners.setdefault(".".join(parts[:-1]), _normalize(dist.metadata["Name"]))
            elif file.suffix == ".py" or file.suffix == ".so":
                owners.setdefault(
                    ".".join(parts[:-1] + (file.name.split(".")[0],)), _normalize(dist.metadata["Name"])
                )
    return owners


def distribution_of(names: tuple[str, ...]) -> str | None:
    """The distribution providing an import: the first of its names (or their longest dotted
    prefix) that an installed distribution provides."""
    for module in names:
        parts = module.split(".")
        for end in range(len(parts), 0, -1):
            owner = _module_owners().get(".".join(parts[:end]))
            if owner:
                return owner
    return None


def _requires(dist: str) -> set[str]:
    try:
        requires = metadata.requires(dist) or []
    except metadata.PackageNotFoundError:
        return set()
    out = set()
    for spec in requires:
        if "extra ==" in spec:
            continue
        out.add(_normalize(re.split(r"[\s;<>=!~\[(]", spec, maxsplit=1)[0]))
    return out


def with_dependencies(dists: set[str]) -> set[str]:
    seen, todo = set(), list(dists)
    while todo:
        dist = todo.pop()
        if dist not in seen:
            seen.add(dist)
            todo.extend(_requires(dist))
    return seen


def pins(path: str = os.path.join(ROOT, "requirements.txt")) -> dict[str, str]:
    """requirements.txt's `name==version` lines, by normalized name."""
    out = {}
    with open(path) as f:
        for line in f:
            line = line.split("#")[0].strip()
            if line:
                name = re.split(r"[\s;<>=!~\[]", line, maxsplit=1)[0]
                out[_normalize(name)] = line
    return out


def needed_distributions(external: set[tuple[str, ...]]) -> tuple[set[str], list[str]]:
    """Distributions to list for these imports (the project's pinned ones that provide them),
    and the problems: imports nothing installed provides, or only an unpinned distribution
    that no pinned one brings along."""
    pinned = pins()
    owners, problems = set(), []
    for names in sorted(external):
        owner = distribution_of(names)
        if owner is None:
            problems.append(names[0])
        else:
            owners.add(owner)
    # A provider that is not pinned itself comes with a pinned one (google-api-core with firestore).
    direct = {d for d in owners if d in pinned} | {RUNTIME}
    return direct, problems + sorted(owners - with_dependencies(direct))


def build(name: str, out_dir: str) -> str:
    main = os.path.join(ROOT, FUNCTIONS, name, "main.py")
    files, external = reach(ROOT, main, *own_modules(name))
    dists, problems = needed_distributions(external)
    if problems:
        raise SystemExit(f"{name}: no pinned distribution provides {', '.join(problems)}")
    pinned = pins()
    endpoint_requirements = os.path.join(ROOT, FUNCTIONS, name, ENDPOINT_REQUIREMENTS)
    if os.path.isfile(endpoint_requirements):
        files.add(endpoint_requirements)
        pinned = {**pinned, **pins(endpoint_requirements)}
        dists |= set(pins(endpoint_requirements))
    os.makedirs(out_dir, exist_ok=True)
    target = os.path.join(out_dir, f"{name}.zip")
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(files):
            arcname = (  # main.py and endpoint_requirements.txt at the root; modules at their path
                os.path.basename(path)
                if path in (main, endpoint_requirements)
                else os.path.relpath(path, ROOT)
            )
            info = zipfile.ZipInfo(arcname, date_time=(2020, 1, 1, 0, 0, 0))  # reproducible bytes
            info.compress_type, info.external_attr = zipfile.ZIP_DEFLATED, 0o644 << 16
            with open(path, "rb") as f:
                archive.writestr(info, f.read())
        requirements = "".join(f"{pinned[d]}\n" for d in sorted(dists))
        info = zipfile.ZipInfo("requirements.txt", date_time=(2020, 1, 1, 0, 0, 0))
        info.compress_type, info.external_attr = zipfile.ZIP_DEFLATED, 0o644 << 16
        archive.writestr(info, requirements)
    return target


def check(folder: str, function: str | None = None) -> list[str]:
    """Problems of an unpacked archive: imports not covered by it or its requirements.txt,
    requirements nothing needs, and (given the function's name) modules of its own it lacks.
    An empty list is a pass."""
    problems = []
    if not os.path.isfile(os.path.join(folder, "main.py")):
        return ["no main.py at the root"]
    for path in own_modules(function) if function else ():
        where = os.path.relpath(path, ROOT)
        if not os.path.isfile(os.path.join(folder, where)):
            problems.append(f"the archive lacks {where}, a module of the function's own")
    listed = set(pins(os.path.join(folder, "requirements.txt")))
    provided = with_dependencies(listed)
    used: set[str] = set()
    for dirpath, _, filenames in os.walk(folder):
        for filename in filenames:
            if not filename.endswith(".py"):
                continue
            path = os.path.join(dirpath, filename)
            where = os.path.relpath(path, folder)
            for names in sorted(imports_of(path)):
                top = names[0].split(".")[0]
                if top in sys.stdlib_module_names:
                    continue
                if top in LOCAL:
                    if not _local_module(folder, names):
                        problems.append(f"{where} imports {names[0]}, which the archive lacks")
                    continue
                owner = distribution_of(names)
                if owner is None:
                    problems.append(f"{where} imports {names[0]}, which no installed distribution provides")
                elif owner not in provided:
                    problems.append(f"{where} imports {names[0]} ({owner}), not in requirements.txt")
                else:
                    used.add(owner)
    endpoint_requirements = os.path.join(folder, ENDPOINT_REQUIREMENTS)
    if os.path.isfile(endpoint_requirements):  # for the code the function runs, not imports
        declared = set(pins(endpoint_requirements))
        problems += [
            f"{ENDPOINT_REQUIREMENTS} lists {d}, which requirements.txt lacks"
            for d in sorted(declared - listed)
        ]
        used |= declared
    for dist in sorted(listed - used - {RUNTIME}):
        problems.append(f"requirements.txt lists {dist}, which nothing imports")
    if RUNTIME not in listed:
        problems.append(f"requirements.txt lacks {RUNTIME}, which serves the function")
    return problems


def function_names() -> list[str]:
    from tools.gateway import function_names as names

    return names()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default=os.path.join(ROOT, "dist"))
    parser.add_argument("--server", default="/", help="the combined document's servers URL")
    parser.add_argument("functions", nargs="*", help="default: every function")
    args = parser.parse_args()
    for name in args.functions or function_names():
        path = build(name, args.out)
        with zipfile.ZipFile(path) as archive:
            requirements = archive.read("requirements.txt").decode().split()
            print(f"{path}: {len(archive.namelist())} files; {' '.join(requirements)}")
    write_openapi(os.path.join(args.out, "openapi.json"), args.server)


def write_openapi(target: str, server: str = "/") -> str:
    """The combined document, made in a process of its own: loading the functions starts what
    they start at boot (the twins' first sandbox worker), which must not outlive it."""
    import subprocess

    argv = [sys.executable, "-m", "tools.gateway", "--openapi", os.path.abspath(target), "--server", server]
    subprocess.run(argv, cwd=ROOT, check=True)
    print(f"{target}: the OpenAPI document of every function")
    return target


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    main()
