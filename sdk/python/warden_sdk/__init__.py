"""Warden's Python SDK: optional helpers for plugin handlers.

A plain ``def handler(event)`` needs none of this. The SDK adds:

* typed events and results: ``@typed(MyEvent)`` turns the event object into
  a dataclass (refusing missing or unknown fields with a clear error) and a
  dataclass result back into JSON;
* structured errors: ``raise PluginError("ValidationError", "name is
  required")`` is reported by the platform with that type and message;
* a local test helper: ``invoke(handler, event)`` calls a handler the way
  the platform does (JSON in, JSON out, async handlers awaited) and returns
  the value or raises what the platform would report.
* ``request(url, credential="github")``: an HTTP request through the
  platform's egress proxy, to a host the version declared, with a
  credential the platform holds injected by the proxy (the plugin never
  sees the secret).

Standard library only; ``warden plugin pack`` adds this module to a package
whose code imports it and does not ship its own copy.
"""

import asyncio
import dataclasses
import functools
import http.client
import inspect
import json
import os
import types
import typing
import urllib.parse

__version__ = "0.1.0"
__all__ = ["PluginError", "typed", "invoke", "InvocationError", "request", "Response"]


class PluginError(Exception):
    """An error the plugin reports on purpose, with a type of its choosing.

    ``PluginError("ValidationError", "name is required")`` raises an
    exception whose class is named ``ValidationError`` (a subclass of
    PluginError), so the platform reports ``{"type": "ValidationError",
    "message": "name is required"}``.
    """

    _classes = {}

    def __new__(cls, error_type=None, message=None, *args, **kwargs):
        if cls is PluginError and isinstance(error_type, str) and message is not None:
            if not error_type.isidentifier():
                raise ValueError(f"error type {error_type!r} must be an identifier")
            sub = PluginError._classes.get(error_type)
            if sub is None:
                sub = type(error_type, (PluginError,), {"__module__": "warden_sdk"})
                PluginError._classes[error_type] = sub
            return Exception.__new__(sub)
        return Exception.__new__(cls)

    def __init__(self, error_type=None, message=None):
        if message is None:
            # PluginError("message") or a subclass raised with one argument.
            message, error_type = error_type, type(self).__name__
        super().__init__(message)
        self.error_type = error_type
        self.message = message

    def __str__(self):
        return str(self.message)


def _field_types(cls):
    try:
        return typing.get_type_hints(cls)
    except Exception:
        return {f.name: f.type for f in dataclasses.fields(cls)}


def _check(value, hint, where):
    """A light check of JSON values against simple type hints."""
    origin = typing.get_origin(hint)
    if hint in (typing.Any, None) or isinstance(hint, typing.TypeVar):
        return value
    if origin is typing.Union or (hasattr(types, "UnionType") and origin is types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            # Optional[X]: X's own, more precise, error.
            return _check(value, options[0], where)
        for a in options:
            try:
                return _check(value, a, where)
            except PluginError:
                pass
        raise PluginError("InvalidEvent", f"{where}: {value!r} does not match {hint}")
    if dataclasses.is_dataclass(hint):
        return _to_dataclass(hint, value, where)
    if origin in (list, typing.List):
        if not isinstance(value, list):
            raise PluginError("InvalidEvent", f"{where}: expected a list, got {type(value).__name__}")
        (item,) = typing.get_args(hint) or (typing.Any,)
        return [_check(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin in (dict, typing.Dict):
        if not isinstance(value, dict):
            raise PluginError("InvalidEvent", f"{where}: expected an object, got {type(value).__name__}")
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(hint, type):
        if hint is int and isinstance(value, bool):
            raise PluginError("InvalidEvent", f"{where}: expected int, got bool")
        if not isinstance(value, hint):
            raise PluginError("InvalidEvent", f"{where}: expected {hint.__name__}, got {type(value).__name__}")
    return value


def _to_dataclass(cls, data, where="event"):
    if not isinstance(data, dict):
        raise PluginError("InvalidEvent", f"{where}: expected an object, got {type(data).__name__}")
    hints = _field_types(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise PluginError("InvalidEvent", f"{where}: unknown field(s) {', '.join(unknown)}")
    values = {}
    for name, f in fields.items():
        if name in data:
            values[name] = _check(data[name], hints.get(name, typing.Any), f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise PluginError("InvalidEvent", f"{where}: missing required field {name}")
    return cls(**values)


def _to_json(value):
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _to_json(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    return value


def typed(event_type):
    """Decorate a handler taking a dataclass; it receives the event as one
    and may return a dataclass (or anything JSON-serializable)."""
    if not dataclasses.is_dataclass(event_type):
        raise TypeError("typed() takes a dataclass")

    def wrap(fn):
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def handler(event):
                return _to_json(await fn(_to_dataclass(event_type, event)))

        else:

            @functools.wraps(fn)
            def handler(event):
                return _to_json(fn(_to_dataclass(event_type, event)))

        return handler

    return wrap


class InvocationError(Exception):
    """What the platform would report for a failed call."""

    def __init__(self, error_type, message):
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message


def invoke(handler, event):
    """Call ``handler`` as the platform does: the event goes through JSON,
    async handlers are awaited, the result must be JSON. Returns the result
    (decoded from JSON) or raises InvocationError with the reported type."""
    event = json.loads(json.dumps(event))
    try:
        result = handler(event)
        if inspect.isawaitable(result):
            result = asyncio.run(_await(result))
    except (Exception, SystemExit) as e:  # reported like the platform's wrapper does
        raise InvocationError(type(e).__name__, str(e)) from e
    try:
        return json.loads(json.dumps(result, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise InvocationError("ResultNotSerializable", str(e)) from e


async def _await(aw):
    return await aw


class Response:
    """What :func:`request` got back: ``status``, ``headers`` (names in
    lower case), ``body`` (bytes); ``egress_reason`` is set when the
    platform's proxy refused the request (and said why)."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body
        self.egress_reason = headers.get("x-warden-egress-reason")

    @property
    def ok(self):
        """A 2xx answer."""
        return 200 <= self.status < 300

    def text(self, encoding="utf-8"):
        """The body as text."""
        return self.body.decode(encoding, "replace")

    def json(self):
        """The body as JSON."""
        return json.loads(self.body)

    def __repr__(self):
        return f"<Response {self.status}{' ' + self.egress_reason if self.egress_reason else ''}>"


def request(url, method="GET", headers=None, body=None, credential=None, timeout=30.0):
    """Send an HTTP request from a plugin through the platform's egress
    proxy (the box's ``HTTP_PROXY``) and return its :class:`Response`.

    ``url`` must be on a host the version declares in
    ``permissions.network``. ``credential`` names a credential the version
    declares (``permissions.credentials``) and the app stores: the proxy
    puts the secret into the request and opens the connection itself, TLS
    included for ``https://``, so the plugin never holds it. ``body`` may be
    bytes, text, or a value sent as JSON. A refusal by the proxy is a
    response too (403, ``egress_reason`` set), never a secret-bearing retry.
    Raises :class:`PluginError` (``NetworkUnavailable``) when the version
    has no network at all.
    """
    proxy = os.environ.get("HTTP_PROXY") or os.environ.get("http_proxy")
    if not proxy:
        raise PluginError(
            "NetworkUnavailable",
            "this plugin version has no network: declare the host in permissions.network",
        )
    target = urllib.parse.urlsplit(url)
    if target.scheme not in ("http", "https") or not target.hostname:
        raise ValueError(f"url {url!r}: give an absolute http:// or https:// URL")
    via = urllib.parse.urlsplit(proxy)
    sent = {k: v for k, v in (headers or {}).items()}
    if body is not None and not isinstance(body, (bytes, bytearray, str)):
        body = json.dumps(body).encode()
        sent.setdefault("Content-Type", "application/json")
    elif isinstance(body, str):
        body = body.encode()
    if credential is not None or target.scheme == "http":
        # Absolute form to the proxy over plain HTTP: the proxy opens the
        # connection (TLS for https://) and injects the credential.
        if credential is not None:
            sent["X-Warden-Credential"] = credential
        conn = http.client.HTTPConnection(via.hostname, via.port or 80, timeout=timeout)
        path = url
    else:
        # No credential: a CONNECT tunnel, TLS end to end.
        conn = http.client.HTTPSConnection(via.hostname, via.port or 80, timeout=timeout)
        conn.set_tunnel(target.hostname, target.port or 443)
        path = urllib.parse.urlunsplit(("", "", target.path or "/", target.query, ""))
    try:
        conn.request(method, path, body=body, headers=sent)
        r = conn.getresponse()
        return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    except OSError as e:
        # http.client reports a refused CONNECT as an error, not a response.
        if isinstance(conn, http.client.HTTPSConnection) and str(e).startswith("Tunnel connection failed: 403"):
            return Response(403, {"x-warden-egress-reason": "refused"}, b"")
        raise
    finally:
        conn.close()
