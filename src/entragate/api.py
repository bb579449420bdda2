"""The agent's local HTTP API (SPEC section 5), on the standard library's HTTP server.

Routes: ``POST/DELETE/GET /v1/grants``, ``POST /v1/acls/{acl}/flush``,
``GET /v1/status``, ``GET /healthz``, ``GET /readyz``, ``GET /metrics`` and
``GET /v1/openapi.json``. Every route but ``/healthz`` needs
``Authorization: Bearer <api_token>`` (``/readyz`` too, as the spec says: a probe
that cannot send the header can use ``/healthz``). Errors are always
``{"error": {"code": …, "message": …}}``.

A grant is answered 201 only after the store's ``add`` returned, that is after it
committed. Request bodies are capped at :data:`MAX_BODY` and never read beyond it.
The access log is one structured event per request without any header, so the
token can never reach a log line.
"""

from __future__ import annotations

import contextlib
import errno
import hmac
import ipaddress
import json
import math
import os
import re
import secrets
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from entragate import __version__
from entragate.agent_client import loopback_url
from entragate.config import Config, ConfigError
from entragate.errors import EntraError
from entragate.grants import InvalidGrant, StoreUnavailable
from entragate.logs import get_logger, printable
from entragate.metrics import Metrics
from entragate.service import GrantService, InvalidRequest

MAX_BODY = 64 * 1024
TOKEN_FILE_NAME = "api-token"
DEFAULT_TOKEN_DIR = Path("/var/lib/entragate")

_GRANT_FIELDS = {"acl", "ip", "user", "ttl", "expires_at", "note", "source"}
_REVOKE_FIELDS = {"acl", "ip", "user"}
_FLUSH_PATH = re.compile(r"^/v1/acls/([^/]+)/flush$")
_QUIET_PATHS = {"/healthz", "/readyz", "/metrics"}
# path -> method -> handler method name (the flush route has a parameter: _FLUSH_PATH)
_ROUTES: dict[str, dict[str, str]] = {
    "/v1/grants": {"GET": "_list_grants", "POST": "_create_grant", "DELETE": "_revoke_grants"},
    "/v1/status": {"GET": "_status"},
    "/": {"GET": "_status_page"},
    "/healthz": {"GET": "_healthz"},
    "/readyz": {"GET": "_readyz"},
    "/metrics": {"GET": "_metrics"},
    "/v1/openapi.json": {"GET": "_openapi"},
}


# --------------------------------------------------------------------------- token


def default_token_path(config: Config) -> Path:
    """``api_token_file``, else ``api-token`` beside a SQLite store, else /var/lib/entragate."""
    if config.agent.api_token_file is not None:
        return config.agent.api_token_file
    store = config.agent.store
    if store.startswith("sqlite:"):
        try:
            from entragate.grants.sqlite import path_from_url

            return path_from_url(store).expanduser().parent / TOKEN_FILE_NAME
        except ValueError:
            pass
    return DEFAULT_TOKEN_DIR / TOKEN_FILE_NAME


def find_api_token(config: Config) -> str | None:
    """The token the agent uses, if one is configured or already written; never creates one."""
    if config.agent.api_token:
        return config.agent.api_token.reveal().strip()
    path = default_token_path(config)
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text or None


def _read_token_file(path: Path) -> str:
    """The token in ``path`` ("" when missing or empty); refuses a file others can read or
    change, and turns unreadable files into a configuration error naming the path."""
    try:
        with path.open("rb") as fh:
            mode = os.fstat(fh.fileno()).st_mode
            data = fh.read(4096)
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise ConfigError(
            [
                f"agent API token file {path}: cannot read it ({exc.strerror or exc}); run the "
                "agent as the user that owns it, or set agent.api_token_file"
            ]
        ) from None
    if mode & 0o026:  # world-readable, or writable by group or others
        raise ConfigError(
            [
                f"agent API token file {path} is readable or writable by other users (mode "
                f"{oct(stat.S_IMODE(mode))}); anyone who can read it can grant addresses. "
                f"Fix: chmod 600 {path}"
            ]
        )
    if mode & 0o040:
        get_logger(component="api").warning(
            "api.token_file_permissive",
            path=str(path),
            mode=oct(stat.S_IMODE(mode)),
            note="the file's group can use the API",
            fix=f"chmod 600 {path}",
        )
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(
            [f"agent API token file {path} is not UTF-8 text; delete it to get a new token"]
        ) from None


def load_or_create_api_token(config: Config) -> str:
    """``agent.api_token``, else the token file's contents, else a new token written 0600.

    A new token is written to a private temporary file beside the target and linked
    into place, so the token file never exists empty, half written or with looser
    permissions, and concurrent starts all end up with the one token that won.
    Raises :class:`ConfigError` for a token file others can read or that cannot be read.
    """
    log = get_logger(component="api")
    if config.agent.api_token:
        return config.agent.api_token.reveal().strip()
    path = default_token_path(config)
    text = _read_token_file(path)
    if text:
        return text
    token = secrets.token_urlsafe(32)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # 0600
    except OSError as exc:
        raise ConfigError(
            [
                f"agent API token file {path}: cannot create it ({exc.strerror or exc}); create "
                "the directory for the agent's user, or set agent.api_token / api_token_file"
            ]
        ) from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(token + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # atomic; fails if another start got there first
        except FileExistsError:
            existing = _read_token_file(path)
            if existing:
                return existing
            os.replace(tmp, path)  # an empty file left behind: replace it atomically
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                raise
            os.replace(tmp, path)  # a file system without hard links: still never partial
        _fsync_dir(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    log.info("api.token_created", path=str(path))
    return token


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


# --------------------------------------------------------------------------- errors


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def _error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _check_unicode(value: Any) -> None:
    """Refuse strings with lone surrogates (\\ud800 escapes): they are not text."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            item.encode("utf-8")
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def parse_json_body(raw: bytes) -> Any:
    """Strict JSON: UTF-8 text, no duplicate keys, no NaN/Infinity, no lone surrogates."""
    try:
        value = json.loads(
            raw.decode("utf-8"),
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constants,
        )
        _check_unicode(value)
    except _DuplicateKey as exc:
        raise ApiError(
            400, "invalid_request", f"field {str(exc)!r} appears more than once; send it once"
        ) from None
    except UnicodeError:
        raise ApiError(
            400, "malformed_json", "the body is not valid UTF-8 text (or has lone surrogates)"
        ) from None
    except RecursionError:
        raise ApiError(400, "malformed_json", "the body is nested too deeply") from None
    except ValueError as exc:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc}") from None
    return value


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# --------------------------------------------------------------------------- server


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    api: ApiServer


class ApiServer:
    """The agent's HTTP API. ``start()`` serves on a background thread; ``stop()`` ends it."""

    def __init__(
        self,
        config: Config,
        service: GrantService,
        *,
        token: str,
        status: Callable[[], dict[str, Any]],
        ready: Callable[[], bool],
        metrics: Metrics,
        host: str | None = None,
        port: int | None = None,
    ) -> None:
        if not token or not token.strip():
            raise ValueError("the API needs a non-empty token")
        self.config = config
        self.service = service
        self._token = token.strip().encode("utf-8")
        self.status = status
        self.ready = ready
        self.metrics = metrics
        configured_host = config.agent.listen_host
        self.host = host if host is not None else configured_host
        self.requested_port = port if port is not None else config.agent.listen_port
        if not is_loopback(self.host) and self.host != configured_host:
            raise ValueError(
                f"refusing to bind the API to non-loopback address {self.host!r}: "
                f'set agent.listen = "{self.host}:PORT" to expose it deliberately'
            )
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def log(self) -> Any:
        return get_logger(component="api")

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> ApiServer:
        if self._server is not None:
            return self
        family = socket.AF_INET
        try:
            if ipaddress.ip_address(self.host).version == 6:
                family = socket.AF_INET6
        except ValueError:
            pass
        server_cls = type("_BoundServer", (_Server,), {"address_family": family})
        server = server_cls((self.host, self.requested_port), _Handler, bind_and_activate=True)
        server.api = self
        self._server = server
        if not is_loopback(self.host):
            self.log.warning(
                "api.listening_beyond_loopback",
                host=self.host,
                port=self.port,
                note="anyone who can reach this address can try the bearer token; "
                "put TLS and a firewall in front of it",
            )
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="entragate-api",
            daemon=True,
        )
        self._thread.start()
        self.log.info("api.listening", url=self.url)
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(5)
        self.log.info("api.stopped")

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            return self.requested_port
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return loopback_url(self.host, self.port)

    # ------------------------------------------------------------------ helpers

    def token_ok(self, header: str | None) -> bool:
        if not header:
            return False
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        # http.server decodes header bytes as latin-1: encoding back gives the bytes sent
        try:
            sent = value.strip().encode("latin-1")
        except UnicodeEncodeError:
            return False
        return hmac.compare_digest(sent, self._token)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = f"entragate/{__version__}"
    timeout = 30  # an idle or slow client cannot hold a thread for ever

    # ------------------------------------------------------------------ plumbing

    @property
    def api(self) -> ApiServer:
        return self.server.api

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in separate writes; without NODELAY, Nagle holds the body
        # until the client's delayed ACK (~40 ms per request on keep-alive connections).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Replaced: the default writes the request line to stderr; see _access_log."""

    def log_error(self, format: str, *args: Any) -> None:  # noqa: A002
        # protocol errors (bad request line, oversized headers): no headers are included
        self.api.log.warning("api.protocol_error", client=self.client_address[0])

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Protocol-level errors (malformed request line, headers too large) as JSON."""
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "error"
        self.close_connection = True
        self.api.log.warning("api.protocol_error", status=int(code), client=self.client_address[0])
        self._send_json(
            code, _error_body("bad_request" if code == 400 else f"http_{code}", message or phrase)
        )

    def _send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = (json.dumps(body, indent=None, separators=(",", ":")) + "\n").encode("utf-8")
        self._send_bytes(status, data, "application/json", headers)

    def _send_bytes(
        self,
        status: int,
        data: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        self._sent_status = status
        if self._body_pending():
            # an unread body would be parsed as the next request on this connection
            self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _body_pending(self) -> bool:
        """True when the request announced a body that has not been read."""
        headers = getattr(self, "headers", None)
        if headers is None or getattr(self, "_body_read", False):
            return False
        if headers.get("Transfer-Encoding") is not None:
            return True
        lengths = headers.get_all("Content-Length") or []
        return any(v.strip() not in ("", "0") for v in lengths)

    def _declared_length(self) -> int | None:
        values = self.headers.get_all("Content-Length") or []
        if not values:
            return None
        if len(values) > 1:
            raise ApiError(400, "invalid_request", "send exactly one Content-Length header")
        raw = values[0].strip()
        if not (raw.isascii() and raw.isdigit()):
            raise ApiError(
                400, "invalid_request", f"Content-Length {raw[:20]!r} is not a number of bytes"
            )
        if len(raw) > 12:  # far beyond MAX_BODY; also keeps int() cheap
            return MAX_BODY + 1
        return int(raw)

    def _read_json(self) -> Any:
        if self.headers.get("Transfer-Encoding") is not None:
            self.close_connection = True
            raise ApiError(
                411, "length_required", "send the body with a Content-Length, not chunked"
            )
        length = self._declared_length()
        if length is None:
            raise ApiError(411, "length_required", "a JSON body with Content-Length is required")
        if length > MAX_BODY:
            self.close_connection = True  # the body is never read
            raise ApiError(
                413,
                "body_too_large",
                f"the body is {length} bytes; at most {MAX_BODY} are accepted",
            )
        media = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if media != "application/json":
            self.close_connection = True
            raise ApiError(
                415,
                "unsupported_media_type",
                f"send the body as application/json (got {media or 'no Content-Type'})",
            )
        try:
            raw = self.rfile.read(length)
        except OSError:  # the socket timed out half-way through the body
            raw = b""
        self._body_read = True
        if len(raw) < length:
            self.close_connection = True
            raise ApiError(
                400,
                "incomplete_body",
                f"the body ended after {len(raw)} of the {length} bytes Content-Length announced",
            )
        return parse_json_body(raw)

    # ------------------------------------------------------------------ dispatch

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch("PATCH")

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch("HEAD")

    def do_OPTIONS(self) -> None:  # noqa: N802
        self._dispatch("OPTIONS")

    def _routes(self, path: str) -> tuple[dict[str, Callable[..., None]], tuple[str, ...]]:
        names = _ROUTES.get(path)
        args: tuple[str, ...] = ()
        if names is None:
            match = _FLUSH_PATH.match(path)
            names, args = ({"POST": "_flush"}, (unquote(match.group(1)),)) if match else ({}, ())
        return {method: getattr(self, name) for method, name in names.items()}, args

    def _dispatch(self, method: str) -> None:
        started = time.monotonic()
        self._sent_status = 0
        self._body_read = False
        split = urlsplit(self.path)
        path = split.path
        self._query = parse_qs(split.query, keep_blank_values=True)
        try:
            try:
                handlers, args = self._routes(path)
                # the page itself holds no data; it asks for the token and sends it with each read
                if path not in ("/healthz", "/") and not self.api.token_ok(self.headers.get("Authorization")):
                    raise ApiError(
                        401,
                        "unauthorized",
                        "missing or wrong bearer token (Authorization: Bearer <api_token>)",
                        {"WWW-Authenticate": 'Bearer realm="entragate"'},
                    )
                if not handlers:
                    raise ApiError(404, "not_found", f"no route {path}")
                lookup = "GET" if method == "HEAD" and "GET" in handlers else method
                if lookup not in handlers:
                    raise ApiError(
                        405,
                        "method_not_allowed",
                        f"{method} is not allowed on {path}; use {', '.join(sorted(handlers))}",
                        {"Allow": ", ".join(sorted(handlers))},
                    )
                handlers[lookup](*args)
            except ApiError as exc:
                self._fail(exc.status, exc.code, exc.message, exc.headers)
            except InvalidRequest as exc:
                self._fail(400, exc.code, exc.message)
            except InvalidGrant as exc:
                status = 404 if exc.reason == "unknown_acl" and _FLUSH_PATH.match(path) else 422
                self._fail(status, exc.reason, exc.message)
            except StoreUnavailable as exc:
                self.api.log.error("api.store_unavailable", error=str(exc)[:300])
                self._fail(
                    503,
                    "store_unavailable",
                    "the grant store is unavailable; nothing was changed, retry shortly",
                    {"Retry-After": "5"},
                )
            except EntraError as exc:
                self._fail(409 if exc.code == "ENTRA007" else 502, exc.code, exc.message)
            except Exception as exc:
                self.api.log.error(
                    "api.internal_error", path=path, error=type(exc).__name__, detail=str(exc)[:300]
                )
                self._fail(500, "internal_error", "internal error; see the agent's log")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            self._access_log(method, path, started)

    def _fail(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        self._send_json(status, _error_body(code, message), headers)

    def _access_log(self, method: str, path: str, started: float) -> None:
        event = {
            "method": method,
            "path": printable(path if len(path) <= 200 else path[:200] + "…"),
            "status": self._sent_status,
            "duration_ms": round((time.monotonic() - started) * 1000, 1),
            "client": self.client_address[0],
        }
        if path in _QUIET_PATHS and self._sent_status < 400:
            self.api.log.debug("api.request", **event)
        else:
            self.api.log.info("api.request", **event)

    # ------------------------------------------------------------------ routes

    def _object_body(self, allowed: set[str], required: tuple[str, ...]) -> dict[str, Any]:
        body = self._read_json()
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_request", "the body must be a JSON object")
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise ApiError(
                400,
                "invalid_request",
                f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}",
            )
        missing = [k for k in required if body.get(k) in (None, "")]
        if missing:
            raise ApiError(400, "invalid_request", f"missing field(s) {', '.join(missing)}")
        return body

    def _create_grant(self) -> None:
        body = self._object_body(_GRANT_FIELDS, ("acl", "ip", "user"))
        ttl = body.get("ttl")
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int | float | str)):
            raise InvalidGrant(
                "invalid_ttl",
                "ttl must be a number of seconds or a duration such as 8h "
                f"(got a JSON {type(ttl).__name__})",
            )
        if isinstance(ttl, float):
            if not math.isfinite(ttl):
                raise InvalidGrant("invalid_ttl", "ttl is out of range; use seconds, e.g. 28800")
            if not ttl.is_integer():
                raise InvalidGrant(
                    "invalid_ttl", f"ttl {ttl!r} is not a whole number of seconds", ttl
                )
            ttl = int(ttl)
        expires_at: datetime | None = None
        raw_expiry = body.get("expires_at")
        if raw_expiry is not None:
            if not isinstance(raw_expiry, str):
                raise InvalidGrant("invalid_ttl", "expires_at must be an RFC 3339 string")
            try:
                expires_at = datetime.fromisoformat(
                    raw_expiry.strip().replace("Z", "+00:00").replace("z", "+00:00")
                )
            except (ValueError, OverflowError):
                raise InvalidGrant(
                    "invalid_ttl",
                    f"expires_at {raw_expiry!r} is not an RFC 3339 time (e.g. 2030-01-01T12:00:00Z)",
                    raw_expiry,
                ) from None
        # note and source are checked by the service (InvalidRequest: 400 invalid_request)
        grant = self.api.service.grant(
            body["acl"],
            body["ip"],
            body["user"],
            ttl=ttl,
            expires_at=expires_at,
            note=body.get("note") or "",
            source=body.get("source") or "api",
        )
        self._send_json(201, grant.to_json())

    def _revoke_grants(self) -> None:
        body = self._object_body(_REVOKE_FIELDS, ("acl", "ip"))
        user = body.get("user")
        if user is not None and not isinstance(user, str):
            raise InvalidGrant("invalid_user", f"user {user!r} must be a string", user)
        ended = self.api.service.revoke(body["acl"], body["ip"], user or None)
        self._send_json(200, {"ended": ended})

    def _flush(self, acl: str) -> None:
        length = self._declared_length() or 0
        if length > MAX_BODY:
            self.close_connection = True
            raise ApiError(413, "body_too_large", f"at most {MAX_BODY} bytes are accepted")
        if length:
            self.rfile.read(length)  # flush takes no body; drain what was sent
            self._body_read = True
        ended = self.api.service.flush(acl)
        self._send_json(200, {"ended": ended})

    def _list_grants(self) -> None:
        acl_values = self._query.get("acl")
        acl = acl_values[0] if acl_values and acl_values[0] else None
        grants = self.api.service.list(acl)
        self._send_json(200, {"grants": [g.to_json() for g in grants]})

    def _status(self) -> None:
        self._send_json(200, self.api.status())

    def _status_page(self) -> None:
        from entragate.status_page import render_page

        page, policy = render_page(self.api.config.agent.rate)
        self._send_bytes(
            200,
            page.encode("utf-8"),
            "text/html; charset=utf-8",
            {"Content-Security-Policy": policy, "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"},
        )

    def _healthz(self) -> None:
        self._send_json(200, {"ok": True})

    def _readyz(self) -> None:
        if not self.api.ready():
            raise ApiError(
                503,
                "not_ready",
                "the agent has not read the named locations yet; see GET /v1/status for why",
                {"Retry-After": "5"},
            )
        self._send_json(200, {"ready": True})

    def _metrics(self) -> None:
        metrics = self.api.metrics
        try:  # grants are cheap to count; keep the gauge right even between syncs
            counts = dict.fromkeys(self.api.config.acls, 0)
            for grant in self.api.service.list():
                counts[grant.acl] = counts.get(grant.acl, 0) + 1
            for acl, n in counts.items():
                metrics.set_grants(acl, n)
        except StoreUnavailable:
            pass
        self._send_bytes(200, metrics.render(), Metrics.CONTENT_TYPE)

    def _openapi(self) -> None:
        self._send_json(200, openapi_document())


# --------------------------------------------------------------------------- OpenAPI


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def openapi_document() -> dict[str, Any]:
    """The API described by hand (OpenAPI 3.1)."""
    json_body = "application/json"
    grant_ref = {"$ref": "#/components/schemas/Grant"}
    common_errors = {
        "401": _error_response("Missing or wrong bearer token (`unauthorized`)"),
        "503": _error_response("The grant store is unavailable (`store_unavailable`)"),
    }
    body_errors = {
        "400": _error_response(
            "Malformed JSON, not UTF-8, NaN/Infinity or nested too deeply (`malformed_json`), "
            "a body shorter than its Content-Length (`incomplete_body`), or a body that is not "
            "an object, has unknown, repeated or missing fields or a bad note/source "
            "(`invalid_request`)"
        ),
        "411": _error_response("No Content-Length (`length_required`)"),
        "413": _error_response("Body larger than 64 KiB (`body_too_large`)"),
        "415": _error_response("Body not sent as application/json (`unsupported_media_type`)"),
        "422": _error_response(
            "Input refused, nothing stored: `invalid_ip`, `zone_id`, `forbidden_range`, "
            "`prefix_too_short`, `host_bits_set`, `invalid_ttl`, `ttl_too_long`, "
            "`invalid_user`, `invalid_acl`, `unknown_acl`"
        ),
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "entragate agent API",
            "version": __version__,
            "description": "Just-in-time IP grants kept in Microsoft Entra ID IP named "
            "locations. Bound to loopback by default. Every route except /healthz needs "
            "`Authorization: Bearer <api_token>`.",
        },
        "servers": [{"url": "http://127.0.0.1:8787"}],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": {
                                    "type": "string",
                                    "description": "Stable code: an input reason "
                                    "(invalid_ip, forbidden_range, prefix_too_short, "
                                    "invalid_ttl, ttl_too_long, unknown_acl, …), a protocol "
                                    "code (malformed_json, invalid_request, unauthorized, "
                                    "body_too_large, not_found, method_not_allowed, not_ready, "
                                    "store_unavailable) or "
                                    "an ENTRAnnn code",
                                    "examples": ["forbidden_range", "ENTRA007"],
                                },
                                "message": {"type": "string"},
                            },
                        }
                    },
                },
                "Grant": {
                    "type": "object",
                    "required": ["acl", "user", "cidr", "created_at", "expires_at"],
                    "properties": {
                        "acl": {"type": "string"},
                        "user": {"type": "string"},
                        "cidr": {"type": "string", "examples": ["81.2.69.142/32"]},
                        "created_at": {"type": "string", "format": "date-time"},
                        "expires_at": {"type": "string", "format": "date-time"},
                        "source": {"type": "string", "examples": ["api", "cli", "knocknoc"]},
                        "note": {"type": "string"},
                    },
                },
                "GrantRequest": {
                    "type": "object",
                    "required": ["acl", "ip", "user"],
                    "additionalProperties": False,
                    "description": "Exactly one of ttl and expires_at. Granting the same "
                    "(acl, user, ip) again sets its new expiry.",
                    "properties": {
                        "acl": {"type": "string", "examples": ["staff"]},
                        "ip": {
                            "type": "string",
                            "description": "A globally routable address (becomes /32 or "
                            "/128) or CIDR (at least /8 IPv4, /16 IPv6)",
                            "examples": ["81.2.69.142", "2a00:1450:4001:80b::200e"],
                        },
                        "user": {"type": "string", "maxLength": 256},
                        "ttl": {
                            "oneOf": [
                                {"type": "integer", "minimum": 1},
                                {"type": "string", "examples": ["8h", "90m"]},
                            ],
                            "description": "Seconds (or a duration such as 8h), at most max_ttl",
                        },
                        "expires_at": {"type": "string", "format": "date-time"},
                        "note": {"type": "string", "maxLength": 1024},
                        "source": {
                            "type": "string",
                            "maxLength": 64,
                            "description": "Who asked (default: api)",
                        },
                    },
                },
                "RevokeRequest": {
                    "type": "object",
                    "required": ["acl", "ip"],
                    "additionalProperties": False,
                    "properties": {
                        "acl": {"type": "string"},
                        "ip": {"type": "string"},
                        "user": {
                            "type": ["string", "null"],
                            "description": "Omit to end every holder's grant of this address",
                        },
                    },
                },
                "Ended": {
                    "type": "object",
                    "required": ["ended"],
                    "properties": {"ended": {"type": "integer", "minimum": 0}},
                },
            },
        },
        "paths": {
            "/v1/grants": {
                "post": {
                    "summary": "Grant an address (acknowledged once durably stored)",
                    "requestBody": {
                        "required": True,
                        "content": {
                            json_body: {"schema": {"$ref": "#/components/schemas/GrantRequest"}}
                        },
                    },
                    "responses": {
                        "201": {
                            "description": "The stored grant",
                            "content": {json_body: {"schema": grant_ref}},
                        },
                        **body_errors,
                        "409": _error_response(
                            "ENTRA007: the ACL's named locations are full; nothing stored"
                        ),
                        **common_errors,
                    },
                },
                "delete": {
                    "summary": "End grants of an address (idempotent)",
                    "requestBody": {
                        "required": True,
                        "content": {
                            json_body: {"schema": {"$ref": "#/components/schemas/RevokeRequest"}}
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "How many grants ended (0 when none matched)",
                            "content": {
                                json_body: {"schema": {"$ref": "#/components/schemas/Ended"}}
                            },
                        },
                        **body_errors,
                        **common_errors,
                    },
                },
                "get": {
                    "summary": "List active grants",
                    "parameters": [
                        {
                            "name": "acl",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "Active grants",
                            "content": {
                                json_body: {
                                    "schema": {
                                        "type": "object",
                                        "properties": {
                                            "grants": {"type": "array", "items": grant_ref}
                                        },
                                    }
                                }
                            },
                        },
                        "422": _error_response("Unknown ACL (`unknown_acl`)"),
                        **common_errors,
                    },
                },
            },
            "/v1/acls/{acl}/flush": {
                "post": {
                    "summary": "End every grant of an ACL",
                    "parameters": [
                        {
                            "name": "acl",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "How many grants ended",
                            "content": {
                                json_body: {"schema": {"$ref": "#/components/schemas/Ended"}}
                            },
                        },
                        "404": _error_response("Unknown ACL (`unknown_acl`)"),
                        "422": _error_response("Malformed ACL name (`invalid_acl`)"),
                        **common_errors,
                    },
                }
            },
            "/v1/status": {
                "get": {
                    "summary": "Per ACL and location: ranges desired and applied, last sync, "
                    "last error code, throttled until",
                    "responses": {
                        "200": {
                            "description": "Agent status",
                            "content": {json_body: {"schema": {"type": "object"}}},
                        },
                        **common_errors,
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness (no authentication)",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "The process answers",
                            "content": {json_body: {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Readiness: the remote named locations have been read once",
                    "responses": {
                        "200": {
                            "description": "Ready",
                            "content": {json_body: {"schema": {"type": "object"}}},
                        },
                        "503": _error_response("Not ready yet (`not_ready`)"),
                        "401": common_errors["401"],
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {
                            "description": "Prometheus text exposition",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        "401": common_errors["401"],
                    },
                }
            },
            "/v1/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3.1",
                            "content": {json_body: {"schema": {"type": "object"}}},
                        },
                        "401": common_errors["401"],
                    },
                }
            },
        },
    }
