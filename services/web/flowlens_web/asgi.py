"""The web's ASGI application: Starlette with the route decorators the pages are written with.

FastAPI (with pydantic under it) cost the web process about 15 MiB of RSS for what it did here:
routes whose handlers take the request and return a response, exception handlers, middleware.
``App`` gives the same decorators (``api_route``, ``get``, ``post``, ``exception_handler``) on
Starlette's router, so the pages keep their shape.
"""
from __future__ import annotations

import inspect
from typing import Callable, Iterable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route


class App(Starlette):
    def api_route(self, path: str, methods: Iterable[str]) -> Callable:
        """Route ``path`` to the decorated coroutine (taking the request, or nothing) for ``methods``."""
        def add(fn: Callable) -> Callable:
            self.router.routes.append(Route(path, _endpoint(fn), methods=list(methods)))
            return fn
        return add

    def get(self, path: str) -> Callable:
        return self.api_route(path, ["GET"])

    def post(self, path: str) -> Callable:
        return self.api_route(path, ["POST"])

    def exception_handler(self, exc: type[Exception] | int) -> Callable:
        def add(fn: Callable) -> Callable:
            self.add_exception_handler(exc, fn)
            return fn
        return add


def _endpoint(fn: Callable) -> Callable:
    """Starlette calls an endpoint with the request; a handler that takes none is called without."""
    if inspect.signature(fn).parameters:
        return fn

    async def endpoint(request: Request):
        return await fn()
    endpoint.__name__ = fn.__name__
    return endpoint
