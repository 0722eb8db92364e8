"""The config schema, package data (the same file in a checkout, a wheel or any install), and
what reads it: load it, coerce Snakemake's command-line strings to its types, and turn a
validation error into a sentence that names the key, what is allowed and the fix."""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

import jsonschema
import yaml

SCHEMA_PATH = Path(str(importlib.resources.files("bnopt.plan") / "schema.yaml"))


def load_schema(path: str | os.PathLike = SCHEMA_PATH) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


def _types(schema: dict) -> set[str]:
    t = schema.get("type", [])
    return {t} if isinstance(t, str) else set(t)


def _coerce_scalar(value, schema: dict):
    """Snakemake's --config gives list items (and some scalars) as strings: turn '0.1' into 0.1
    where the schema wants a number, 'true' into True, 'null' into None. Strings that are not
    numbers stay strings, so the schema still rejects them."""
    if not isinstance(value, str):
        if isinstance(value, int) and not isinstance(value, bool) and "number" in _types(schema):
            return float(value)
        return value
    types, s = _types(schema), value.strip()
    if "null" in types and s.lower() in ("null", "none", "~", ""):
        return None
    if "boolean" in types and s.lower() in ("true", "false"):
        return s.lower() == "true"
    if "integer" in types:
        try:
            return int(s)
        except ValueError:
            pass
    if "number" in types:
        try:
            return float(s)
        except ValueError:
            pass
    return value


def coerce(value, schema: dict):
    """Coerce ``value`` recursively following ``schema`` (objects, arrays, scalars)."""
    if isinstance(value, dict):
        props = schema.get("properties", {})
        if "object" in _types(schema) and not props:  # free-form (model_kwargs): YAML values
            return {k: yaml.safe_load(v) if isinstance(v, str) else v for k, v in value.items()}
        return {k: coerce(v, props.get(k, {})) for k, v in value.items()}
    if isinstance(value, str) and "array" in _types(schema) and value.strip().startswith("["):
        value = yaml.safe_load(value)  # --config lrs=[0.1,0.5] without quotes around items
    if isinstance(value, list):
        return [coerce(v, schema.get("items", {})) for v in value]
    return _coerce_scalar(value, schema)


def _key(path) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "<config>"


def _describe(err: jsonschema.ValidationError, schema: dict) -> str:
    key = _key(err.absolute_path)
    sub = schema
    for p in err.absolute_path:
        if isinstance(p, str):
            sub = sub.get("properties", {}).get(p, {})
    about = f" ({sub['description'].strip()})" if isinstance(sub.get("description"), str) else ""
    v, inst = err.validator, err.instance
    if v == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(set(inst) - set(allowed))
        where = f" in {key}" if err.absolute_path else ""
        return (f"unknown config key{'s' if len(extra) > 1 else ''} {', '.join(map(repr, extra))}"
                f"{where}. Allowed keys: {', '.join(allowed)}. Check the spelling, or see docs/configuration.md.")
    if v == "anyOf":  # a name of a list, or a string of a pattern (the model)
        names = [n for alt in err.validator_value for n in alt.get("enum", [])]
        return (f"{key} = {inst!r} is not allowed; choose one of: {', '.join(map(str, names))}, "
                "or your own network by import path, 'package.module:factory' "
                "(docs/extending.md).")
    if v == "enum":
        return f"{key} = {inst!r} is not allowed; choose one of: {', '.join(map(str, err.validator_value))}."
    if v == "type":
        want = err.validator_value
        want = " or ".join(want) if isinstance(want, list) else want
        return f"{key} = {inst!r} has the wrong type: expected {want}{about}."
    if v in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        op = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}[v]
        return f"{key} = {inst!r} is out of range: must be {op} {err.validator_value}{about}."
    if v == "required":
        return f"missing config key: {err.message}. Add it to your config file."
    if v in ("minItems", "uniqueItems"):
        return f"{key} = {inst!r}: {err.message}{about}."
    return f"{key}: {err.message}{about}."


def schema_errors(config: dict, schema: dict) -> list[str]:
    """Every way ``config`` breaks ``schema``, in words (:func:`_describe`), each once."""
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(config),
                    key=lambda e: (list(map(str, e.absolute_path)), e.validator))
    return list(dict.fromkeys(_describe(e, schema) for e in errors))
