"""Where ``bakemon bake …`` and ``bakemon alerts tail`` find the API: ``--url``/``--token`` beat
``BAKEMON_URL``/``BAKEMON_API_TOKEN``, which beat the default. The service's own settings are in
:mod:`monitor.config`; these are the client's, read by the client alone."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from monitor.errors import ConfigError

DEFAULT_API_URL = "http://localhost:8080"
CLIENT_URL_ENV = "BAKEMON_URL"
CLIENT_TOKEN_ENV = "BAKEMON_API_TOKEN"


@dataclass(frozen=True)
class ClientSettings:
    """Where the client finds the bakemon API, and the bearer token it sends."""

    url: str = DEFAULT_API_URL
    token: str | None = field(default=None, repr=False)


def load_client_settings(
    url_flag: str | None = None,
    token_flag: str | None = None,
    env: Mapping[str, str] | None = None,
) -> ClientSettings:
    """``--url``/``--token`` beat ``BAKEMON_URL``/``BAKEMON_API_TOKEN``, which beat the default;
    an empty value counts as unset. Validated (an http(s) URL with a host, a token without
    whitespace) and frozen."""
    env = os.environ if env is None else env
    url = url_flag or env.get(CLIENT_URL_ENV) or DEFAULT_API_URL
    source = "--url" if url_flag else (CLIENT_URL_ENV if env.get(CLIENT_URL_ENV) else "default")
    parts = urlsplit(url.strip())
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        msg = f'{source} must be an http:// or https:// URL with a host, got "{url}"'
        raise ConfigError(msg, value=url)
    if parts.query or parts.fragment:
        msg = f'{source} must not have a query or fragment, got "{url}"'
        raise ConfigError(msg, value=url)
    token = token_flag or env.get(CLIENT_TOKEN_ENV) or None
    if token is not None and (token != token.strip() or any(c.isspace() for c in token)):
        where = "--token" if token_flag else CLIENT_TOKEN_ENV
        msg = f"{where} must not contain whitespace"
        raise ConfigError(msg, value="(hidden)")
    return ClientSettings(url=parts.geturl().rstrip("/"), token=token)
