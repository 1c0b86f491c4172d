#!/usr/bin/python3
"""Validate Kubernetes objects against the official OpenAPI v2 document.

The document (swagger.json, Kubernetes API definitions) is looked up as
../shared/k8s/swagger.json relative to the repository root (the parent of
tests/), or wherever CARVEFS_K8S_SWAGGER points.

The upstream definitions accept unknown fields; here every definition that
lists "properties" gets "additionalProperties": false (in a copy), so a typo
such as "acessModes" is an error rather than a field the apiserver silently
drops.  Two adjustments follow the API's real wire format:
IntOrString accepts an integer or a string, and Quantity stays a string
(emit quantities as strings: "10Gi", never 10737418240).  Formats such as
date-time are not checked.

As a module:

    import schema
    schema.validate(pv)                           # a PersistentVolume
    schema.validate(sc, "io.k8s.api.storage.v1.StorageClass")
    schema.validate(obj, None)                    # pick by apiVersion/kind
    errors = schema.errors(obj)                   # list of strings, no raise

As a command: schema.py FILE... validates every document of each YAML or
JSON file (kind: List is validated item by item), choosing the definition
from apiVersion and kind; exits 1 if any is invalid.  YAML needs python3-yaml.
Uses Debian's python3-jsonschema (Draft 4, as the document is OpenAPI v2).
"""

import copy
import functools
import json
import os
import sys

try:
    import jsonschema
except ImportError:  # pragma: no cover - reported when used
    jsonschema = None

DEFAULT_DEFINITION = "io.k8s.api.core.v1.PersistentVolume"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"


class SchemaError(ValueError):
    """An object does not match its definition; .errors lists why."""

    def __init__(self, definition, errors, name=None):
        self.definition, self.errors = definition, errors
        what = f"{name} " if name else ""
        super().__init__(f"{what}does not match {definition}:\n"
                         + "\n".join("  " + e for e in errors))


def swagger_path():
    env = os.environ.get("CARVEFS_K8S_SWAGGER")
    if env:
        return env
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.path.normpath(os.path.join(root, "..", "shared", "k8s", "swagger.json"))


@functools.lru_cache(maxsize=None)
def _definitions(path):
    try:
        with open(path) as f:
            doc = json.load(f)
    except OSError as e:
        raise RuntimeError(f"cannot read the API schema {path}: {e.strerror} "
                           "(set CARVEFS_K8S_SWAGGER)") from None
    defs = copy.deepcopy(doc["definitions"])
    for d in defs.values():
        if "properties" in d and "additionalProperties" not in d:
            d["additionalProperties"] = False
    if INT_OR_STRING in defs:
        defs[INT_OR_STRING] = {"description": defs[INT_OR_STRING].get("description", ""),
                               "type": ["integer", "string"]}
    # apiVersion/kind -> definition name.
    gvk = {}
    for name, d in defs.items():
        for k in d.get("x-kubernetes-group-version-kind", []):
            api_version = f'{k["group"]}/{k["version"]}' if k["group"] else k["version"]
            gvk.setdefault((api_version, k["kind"]), name)
    return defs, gvk


@functools.lru_cache(maxsize=None)
def _validator(path, definition):
    if jsonschema is None:
        raise RuntimeError("python3-jsonschema is not installed "
                           "(tests/k8s/build-control-plane.sh installs it)")
    defs, _ = _definitions(path)
    if definition not in defs:
        raise SchemaError(definition, [f"no definition {definition} in {path}"])
    return jsonschema.Draft4Validator({"$ref": f"#/definitions/{definition}",
                                       "definitions": defs})


def definition_for(obj):
    """The definition name for obj's apiVersion and kind (SchemaError if none)."""
    defs, gvk = _definitions(swagger_path())
    key = (obj.get("apiVersion"), obj.get("kind")) if isinstance(obj, dict) else (None, None)
    if key not in gvk:
        raise SchemaError("(unknown kind)",
                          [f"no definition for apiVersion {key[0]!r} kind {key[1]!r}"])
    return gvk[key]


def _where(error):
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    return path.lstrip(".") or "(top)"


def errors(obj, kind_definition=DEFAULT_DEFINITION):
    """The list of problems of obj (empty if valid), each "path: message"."""
    if kind_definition is None:
        kind_definition = definition_for(obj)
    v = _validator(swagger_path(), kind_definition)
    out = []
    for e in sorted(v.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path))):
        out.append(f"{_where(e)}: {e.message}")
        # For anyOf/oneOf, say what each alternative disliked.
        for sub in e.context or ():
            out.append(f"    {_where(sub)}: {sub.message}")
    return out


def validate(obj, kind_definition=DEFAULT_DEFINITION):
    """Raise SchemaError listing every problem if obj does not match.

    kind_definition: a definition name such as
    "io.k8s.api.core.v1.PersistentVolume", or None to choose by apiVersion
    and kind.
    """
    if kind_definition is None:
        kind_definition = definition_for(obj)
    errs = errors(obj, kind_definition)
    if errs:
        name = None
        if isinstance(obj, dict):
            name = f'{obj.get("kind", "object")} {obj.get("metadata", {}).get("name", "")!r}'
        raise SchemaError(kind_definition, errs, name)


def _load(path):
    with open(path) as f:
        text = f.read()
    if path.endswith(".json") or text.lstrip()[:1] in ("{", "["):
        try:
            doc = json.loads(text)
            return doc if isinstance(doc, list) else [doc]
        except ValueError:
            if path.endswith(".json"):
                raise
    try:
        import yaml
    except ImportError:
        raise RuntimeError(f"{path}: YAML needs python3-yaml") from None
    return [d for d in yaml.safe_load_all(text) if d is not None]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: schema.py FILE...  (YAML or JSON Kubernetes objects)", file=sys.stderr)
        return 2
    try:
        _definitions(swagger_path())
    except RuntimeError as e:
        print(f"schema.py: {e}", file=sys.stderr)
        return 2
    bad = 0
    for path in argv:
        try:
            docs = _load(path)
        except (OSError, ValueError, RuntimeError) as e:
            print(f"{path}: {e}", file=sys.stderr)
            bad += 1
            continue
        objs = []
        for d in docs:
            if isinstance(d, dict) and d.get("kind") == "List":
                objs.extend(d.get("items") or [])
            else:
                objs.append(d)
        for i, obj in enumerate(objs):
            label = f"{path}#{i}"
            if isinstance(obj, dict):
                label += f' ({obj.get("kind")} {obj.get("metadata", {}).get("name", "")})'
            try:
                validate(obj, None)
            except SchemaError as e:
                print(f"{label}: {e}", file=sys.stderr)
                bad += 1
            else:
                print(f"{label}: ok")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
