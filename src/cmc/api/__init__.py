"""The HTTP API: Litestar routes over the use cases, problem details for every error."""

from typing import Any, TypeAlias

from litestar import Request

HttpRequest: TypeAlias = Request[Any, Any, Any]
"""Routes read headers and bodies themselves; user, auth and state types are not used."""
