"""The server's errors, all in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from speechpeft.errors import MissingInputError, UserError


class ApiError(Exception):
    """An answer in OpenAI's error shape: `{"error": {"message", "type", "param", "code"}}`."""

    def __init__(
        self, status: int, message: str, *, param: str | None = None, code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
        self.headers.update(headers or {})  # e.g. Retry-After on a 503, Connection: close on a refused body

    def response(self) -> JSONResponse:
        kind = "server_error" if self.status >= 500 else "invalid_request_error"
        body = {"message": self.message, "type": kind, "param": self.param, "code": self.code}
        return JSONResponse({"error": body}, status_code=self.status, headers=self.headers or None)


def add_error_handlers(app: FastAPI) -> None:
    """Every error in OpenAI's shape: the bank's InputError 400, MissingInputError 404, bad fields 400, faults 500."""

    def user_error(request: Request, error: Exception) -> JSONResponse:
        status = 404 if isinstance(error, MissingInputError) else 400
        return ApiError(status, str(error)).response()

    def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0]
        param = ".".join(str(part) for part in first["loc"][1:]) or None
        return ApiError(400, f"{param or 'request'}: {first['msg']}", param=param).response()

    def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return ApiError(error.status_code, str(error.detail), headers=error.headers).response()

    def fault(request: Request, error: Exception) -> JSONResponse:  # logged by the server with its traceback
        return ApiError(500, f"the server failed on this request ({type(error).__name__}); see its log").response()

    app.add_exception_handler(ApiError, lambda request, error: error.response())
    app.add_exception_handler(Exception, fault)
    app.add_exception_handler(UserError, user_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(HTTPException, http_error)
