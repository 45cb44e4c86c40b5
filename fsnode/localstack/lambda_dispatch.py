"""Run Lambda invocations in-process, inside the moto server.

moto runs Lambda code only through Docker, which this machine does not have. The
local stack replaces the method moto uses to run a function so that it imports the
function's handler (``app.NAME`` resolves to the Chalice app in ``functions/``) and
calls it with the function's configured environment. Step Functions' ``lambda:invoke``
tasks, ``Retry`` and ``Catch`` then behave as in AWS. The patch is tied to moto's
pinned version and covered by a test.

As Lambda does, it refuses a request over 6 MB (``RequestEntityTooLargeException``)
and fails an answer over 6 MB (``Function.ResponseSizeTooLarge``); with ``run_as``
(the local stack) each invocation's AWS calls are signed as the function's role.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import threading
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fsnode.localstack import aws_limits
from fsnode.localstack.app_loader import load_functions_app

Handler = Callable[[dict[str, Any], Any], Any]
# (role ARN, function name) -> a context in which AWS calls are signed as that role.
RunAs = Callable[[str, str], contextlib.AbstractContextManager[None]]

_env_lock = threading.Lock()


class LambdaContext:
    """The slice of the Lambda context object that handlers and Powertools read."""

    def __init__(self, function_name: str, memory_size: int, timeout: int) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory_size
        self.invoked_function_arn = f"arn:aws:lambda:local:000000000000:function:{function_name}"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._timeout_ms = timeout * 1000

    def get_remaining_time_in_millis(self) -> int:
        return self._timeout_ms


class HandlerResolver:
    """Turns a Lambda ``Handler`` string into a callable."""

    def __init__(self, functions_dir: Path) -> None:
        self._functions_dir = functions_dir

    def resolve(self, handler: str) -> Handler:
        module_name, _, attr = handler.rpartition(".")
        if module_name == "app":
            module = load_functions_app(self._functions_dir)
        else:
            module = importlib.import_module(module_name)
        return getattr(module, attr)  # type: ignore[no-any-return]


def install(functions_dir: Path, run_as: RunAs | None = None) -> None:
    """Patch moto's Lambda model so invocations run the real handlers in this process."""
    from moto.awslambda.models import LambdaFunction
    from moto.core.exceptions import JsonRESTError

    resolver = HandlerResolver(functions_dir)

    def invoke_in_process(self: Any, event: Any = None) -> tuple[str, bool, str]:
        raw = event if isinstance(event, str | bytes) else json.dumps(event or {})
        size = len(raw.encode() if isinstance(raw, str) else raw)
        if size >= aws_limits.LAMBDA_REQUEST_BYTES:
            error = JsonRESTError(
                "RequestEntityTooLargeException",
                f"Request must be smaller than {aws_limits.LAMBDA_REQUEST_BYTES} bytes for the "
                "InvokeFunction operation",
            )
            error.code = 413
            raise error
        payload = event if isinstance(event, dict) else json.loads(event or "{}")
        env = (self.environment_vars or {}) if hasattr(self, "environment_vars") else {}
        try:
            with _env_lock:
                # All functions of one stack share one environment, as in the deployed app.
                os.environ.update({k: str(v) for k, v in env.items()})
            handler = resolver.resolve(self.handler)
            context = LambdaContext(self.function_name, int(self.memory_size), int(self.timeout))
            signing = run_as(self.role, self.function_name) if run_as else contextlib.nullcontext()
            with signing:
                result = handler(payload, context)
            answer = json.dumps(result)
            if len(answer.encode()) > aws_limits.LAMBDA_RESPONSE_BYTES:
                return json.dumps(_too_large(len(answer.encode()))), True, ""
            return answer, False, ""
        except Exception as exc:
            # The shape Lambda gives an unhandled error; Step Functions matches errorType.
            body = {
                "errorType": type(exc).__name__,
                "errorMessage": str(exc),
                "stackTrace": traceback.format_exception(exc)[-5:],
            }
            return json.dumps(body), True, traceback.format_exc()

    invoke = getattr(LambdaFunction.invoke, "__wrapped__", LambdaFunction.invoke)

    def invoke_as_lambda(self: Any, body: Any, request_headers: Any, response_headers: Any) -> Any:
        answer = invoke(self, body, request_headers, response_headers)
        # Lambda marks every error the runtime reports Unhandled (moto says Handled).
        if response_headers.get("x-amz-function-error") == "Handled":
            response_headers["x-amz-function-error"] = "Unhandled"
        return answer

    invoke_as_lambda.__wrapped__ = invoke  # type: ignore[attr-defined]
    setattr(LambdaFunction, "_invoke_lambda", invoke_in_process)  # noqa: B010 (a patch)
    setattr(LambdaFunction, "invoke", invoke_as_lambda)  # noqa: B010


def _too_large(size: int) -> dict[str, str]:
    # Lambda's own answer when a function returns more than a synchronous call may carry.
    return {
        "errorType": "Function.ResponseSizeTooLarge",
        "errorMessage": f"Response payload size ({size} bytes) exceeded maximum allowed "
        f"payload size ({aws_limits.LAMBDA_RESPONSE_BYTES} bytes).",
    }
