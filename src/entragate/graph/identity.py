"""Application tokens through msal, for a client secret or a certificate."""

from __future__ import annotations

import threading
from typing import Any

import msal

from entragate.config import Config
from entragate.credentials import load_certificate_credential
from entragate.errors import (
    AuthenticationFailed,
    EntraError,
    classify_exception,
    from_token_result,
)
from entragate.transport import EntraSession


class TokenProvider:
    """Access tokens for Graph; msal's cache makes repeated calls free until expiry."""

    def __init__(self, config: Config, session: EntraSession) -> None:
        self._config = config
        self._session = session
        self._app: msal.ConfidentialClientApplication | None = None
        self._lock = threading.Lock()
        self._last_error: tuple[dict[str, Any], int] | None = None

    @property
    def host(self) -> str:
        return self._config.login_host

    def _credential(self) -> Any:
        config = self._config
        if config.client_certificate is not None:
            password = config.client_certificate_password
            try:
                return load_certificate_credential(
                    config.client_certificate, password.reveal() if password else None
                )
            except (OSError, ValueError) as exc:
                raise AuthenticationFailed(
                    f"cannot load client_certificate {config.client_certificate}: "
                    f"{type(exc).__name__}",
                    host=self.host,
                    operation="load certificate",
                    hint="client_certificate must be a PEM with its private key, or a PFX "
                    "with client_certificate_password",
                ) from None
        if config.client_secret is not None:
            return config.client_secret.reveal()
        raise AuthenticationFailed(
            "no credential configured", host=self.host, operation="token request"
        )

    def _application(self) -> msal.ConfidentialClientApplication:
        # msal's constructor fetches the tenant's OpenID configuration: network I/O that
        # must happen inside the classified scope of access_token().
        if self._app is None:
            self._app = msal.ConfidentialClientApplication(
                self._config.client_id,
                client_credential=self._credential(),
                authority=self._config.authority,
                http_client=self._session,
                instance_discovery=False,
                # Never a regional token endpoint (MSAL_FORCE_REGION would pick one): the
                # agent, its proxy rules, connect_to and the doctor must see one login host.
                azure_region=False,
                token_cache=msal.TokenCache(),
            )
        return self._app

    def _last_error_answer(self) -> tuple[dict[str, Any], int] | None:
        """The token endpoint's last error answer (body, status).

        msal answers repeated requests from its HTTP cache for a while after a 5xx or
        429 (seconds, or Retry-After) and after a 400 (a minute), with no new response
        reaching the session; the answer remembered here keeps reporting what Microsoft
        said (ENTRA008, ENTRA005 …) rather than msal's generic error.
        """
        response = self._session.last_response()
        if response is None:
            return self._last_error  # msal answered from its cache
        if response.status_code < 400:
            return None
        try:
            body = response.json()
        except ValueError:
            body = {"error": f"HTTP {response.status_code}"}
        if not isinstance(body, dict):
            body = {"error": f"HTTP {response.status_code}"}
        self._last_error = (body, response.status_code)
        return self._last_error

    def access_token(self) -> str:
        with self._lock:
            self._session.forget_last_response()
            try:
                app = self._application()
                result = app.acquire_token_for_client(scopes=[self._config.graph_scope])
            except EntraError:
                raise
            except Exception as exc:
                answer = self._last_error_answer()
                if answer is None:
                    raise classify_exception(exc, host=self.host, operation="token request") from exc
                raise from_token_result(answer[0], host=self.host, status=answer[1]) from exc
            if result and "access_token" in result:
                self._last_error = None
                return str(result["access_token"])
            answer = self._last_error_answer()
            raise from_token_result(result or {}, host=self.host, status=answer[1] if answer else None)

    def invalidate(self) -> None:
        """Drop cached tokens (Graph said 401: the token may have been revoked)."""
        with self._lock:
            if self._app is not None:
                self._app.remove_tokens_for_client()
