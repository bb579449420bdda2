"""What the CLI uses to talk to a running agent over its local HTTP API."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import requests

from entragate.config import Config
from entragate.grants.model import GrantRequest, RevokeRequest
from entragate.grants.validation import REASONS

# 4xx codes that mean "the caller's input or setup was wrong" (CLI exit 2)
INPUT_CODES = REASONS | {"malformed_json", "invalid_request", "unauthorized", "body_too_large"}


class AgentError(Exception):
    """The agent answered with an error (``code`` is the API's error code) or could not be reached."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status

    @property
    def is_input_error(self) -> bool:
        return self.code in INPUT_CODES


class AgentUnreachable(AgentError):
    def __init__(self, url: str, detail: str) -> None:
        super().__init__(
            "agent_unreachable",
            f"cannot reach the agent at {url} ({detail}); is it running? Start it with "
            "`entragate run` (or check `systemctl status entragate`), then retry",
        )


def agent_url(config: Config) -> str:
    """The base URL of the agent's API from ``agent.listen`` (wildcards become loopback)."""
    host = config.agent.listen_host
    return loopback_url(host, config.agent.listen_port, tls=config.agent.tls_cert is not None)


def agent_verify(config: Config) -> str | bool:
    """What the agent's certificate is checked against: ``agent.tls_cert`` itself (a
    self-signed certificate, or a chain file that ends with its CA), else nothing to check."""
    return str(config.agent.tls_cert) if config.agent.tls_cert is not None else True


def loopback_url(host: str, port: int, *, tls: bool = False) -> str:
    """The URL a local client uses for a listener on ``host`` (wildcards mean loopback)."""
    if host in ("", "0.0.0.0"):  # noqa: S104 - naming the wildcard, not binding it
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if tls else 'http'}://{host}:{port}"


class AgentClient:
    def __init__(
        self, url: str, token: str, *, timeout: float = 15.0, verify: str | bool = True
    ) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self.timeout = timeout
        self._session = requests.Session()
        self._session.verify = verify
        # The agent is local: never send its token through HTTP(S)_PROXY from the environment.
        self._session.trust_env = False

    def __repr__(self) -> str:
        return f"AgentClient({self.url!r}, token='***')"

    def close(self) -> None:
        self._session.close()

    # ------------------------------------------------------------------ plumbing

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        try:
            response = self._session.request(
                method,
                self.url + path,
                json=body,
                params=params,
                # bytes: a configured token may be non-ASCII (str headers must be latin-1)
                headers={"Authorization": b"Bearer " + self._token.encode("utf-8")},
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise AgentUnreachable(self.url, type(exc).__name__) from exc
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code >= 400:
            error = data.get("error") if isinstance(data, dict) else None
            if isinstance(error, dict):
                raise AgentError(
                    str(error.get("code", f"http_{response.status_code}")),
                    str(error.get("message", "")),
                    response.status_code,
                )
            raise AgentError(
                f"http_{response.status_code}",
                f"the agent answered {response.status_code} {response.reason}",
                response.status_code,
            )
        if data is None:
            raise AgentError(
                "bad_response", "the agent's answer was not JSON", response.status_code
            )
        return data

    # ------------------------------------------------------------------ operations

    def reachable(self, timeout: float = 0.5) -> bool:
        """A fast liveness probe of ``/healthz`` (no token needed)."""
        try:
            response = self._session.get(
                self.url + "/healthz", timeout=timeout, allow_redirects=False
            )
        except requests.RequestException:
            return False
        return response.status_code == 200

    def grant(self, request: GrantRequest) -> dict[str, Any]:
        """``POST /v1/grants``: the stored grant."""
        result: dict[str, Any] = self._request("POST", "/v1/grants", body=request.to_json())
        return result

    def revoke(self, request: RevokeRequest) -> dict[str, Any]:
        """``DELETE /v1/grants``: ``{"ended": n}``."""
        result: dict[str, Any] = self._request("DELETE", "/v1/grants", body=request.to_json())
        return result

    def flush(self, acl: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("POST", f"/v1/acls/{quote(acl, safe='')}/flush")
        return result

    def list(self, acl: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._request(
            "GET", "/v1/grants", params={"acl": acl} if acl else None
        )
        return result

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", "/v1/status")
        return result
