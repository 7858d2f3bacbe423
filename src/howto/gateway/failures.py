"""What the gateway does when a request fails: a short reply and one line in the log.

A failure becomes a status (404 for absent content, 502 for a block that does not match
its CID or a gateway behind this one failing, 500 otherwise) with a one-line text body.
One that happens after the reply began cannot change the status any more: the connection
is dropped, so the reader sees a truncated reply rather than wrong bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web

from ..errors import GatewayError, IntegrityError, NotFoundError, UnavailableError, printable

#: One line per failed request: 4xx at INFO, 5xx at WARNING (shown on stderr by default).
log = logging.getLogger("howto.gateway")


class _Reported(ConnectionError):
    """A failure already logged, after the reply had begun: the connection is dropped."""


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class _OneLine(logging.Filter):
    """What aiohttp's server itself logs, as one line without a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            if isinstance(exc, _Reported):
                return False
            record.msg = f"{record.getMessage()}: {type(exc).__name__}: {_first_line(exc)}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


#: The logger given to aiohttp's server (what it logs itself, one line each).
server_log = logging.getLogger("howto.gateway.server")
server_log.addFilter(_OneLine())


def _failure(exc: Exception) -> type[web.HTTPException]:
    """The reply for an exception from a handler: 404 for absent content, 502 for blocks
    that do not match their CID or gateways behind this one failing, 500 otherwise."""
    if isinstance(exc, NotFoundError):
        return web.HTTPNotFound
    if isinstance(exc, UnavailableError):  # 404 unless gateways behind this one were asked
        return web.HTTPBadGateway if exc.remote else web.HTTPNotFound
    if isinstance(exc, IntegrityError | GatewayError):
        return web.HTTPBadGateway
    return web.HTTPInternalServerError


def _log_failure(request: web.Request, status: int, reason: str) -> None:
    level = logging.WARNING if status >= 500 else logging.INFO
    log.log(level, "%s %s -> %d: %s", request.method, _path(request), status, printable(reason))


def _path(request: web.Request) -> str:
    """The request's path as sent (``%0A`` stays ``%0A``), so that no line in the log
    can be forged by a path that decodes to a line break or a terminal escape."""
    return printable(request.raw_path.partition("?")[0])


@web.middleware
async def failure_replies(request: web.Request, handler: Callable) -> web.StreamResponse:
    """Every failure becomes a reply with a one-line body and one line in the log; one
    that happens after the reply began (a corrupt block deep in a file) drops the
    connection, so the reader sees a truncated reply rather than wrong bytes."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status >= 400:
            _log_failure(request, exc.status, (exc.text or exc.reason).strip())
        raise
    except Exception as exc:
        transport = request.transport
        if isinstance(exc, ConnectionError) and (transport is None or transport.is_closing()):
            raise _Reported() from None  # the client went away: nothing to tell it
        reply = _failure(exc)
        if request.get(_STARTED):
            reason = printable(_first_line(exc))
            log.warning("%s %s -> cut short: %s", request.method, _path(request), reason)
            raise _Reported() from None
        _log_failure(request, reply.status_code, _first_line(exc))
        raise reply(text=f"{_first_line(exc)}\n") from None


#: Set on a request once its reply has begun (typed keys exist from aiohttp 3.13 on).
_STARTED = web.RequestKey("howto.started", bool) if hasattr(web, "RequestKey") else "started"


async def mark_started(request: web.Request, response: web.StreamResponse) -> None:
    """An ``on_response_prepare`` hook: from now on a failure cuts the reply short."""
    request[_STARTED] = True


__all__ = ["failure_replies", "log", "mark_started", "server_log"]
