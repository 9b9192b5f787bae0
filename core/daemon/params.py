"""Checking a request's params against the method's signature before calling it.

JSON gives strings, numbers, booleans, null, arrays and objects; a method declares what it
takes with ordinary annotations. A mismatch is the client's mistake (JSON-RPC's -32602
"invalid params", naming the parameter), not an exception deep inside the method.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from typing import Any


def params_problem(fn: Callable[..., Any], params: dict[str, Any]) -> str | None:
    """Why ``params`` do not fit ``fn`` (missing, unknown or wrongly typed), or None."""
    try:
        inspect.signature(fn).bind(**params)
    except TypeError as exc:
        return str(exc)
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # annotations that do not resolve: the call itself will tell
        return None
    for name, value in params.items():
        hint = hints.get(name)
        if hint is not None and not fits(value, hint):
            return f"parameter {name!r} must be {describe(hint)}, not {type(value).__name__}"
    return None


def fits(value: Any, hint: Any) -> bool:
    """Does a JSON value fit a (simple) annotation?"""
    if hint is Any:
        return True
    if hint is None or hint is type(None):
        return value is None
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(fits(value, a) for a in args)
    if origin is list:
        return (
            isinstance(value, list) and all(fits(v, args[0]) for v in value)
            if args
            else (isinstance(value, list))
        )
    if origin is dict:
        if not isinstance(value, dict):
            return False
        return not args or all(fits(k, args[0]) and fits(v, args[1]) for k, v in value.items())
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    return isinstance(hint, type) and isinstance(value, hint)


def describe(hint: Any) -> str:
    if hint is type(None):
        return "null"
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in typing.get_args(hint))
    names = {str: "a string", int: "an integer", bool: "a boolean", float: "a number",
             list: "an array", dict: "an object"}  # fmt: skip
    return names.get(origin or hint, getattr(hint, "__name__", str(hint)))
