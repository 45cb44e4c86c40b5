"""Step Functions' limits in moto's interpreter, where moto lets them pass.

moto already fails a state whose output is over 256 KiB (``States.DataLimitExceeded``).
It accepts an execution input and a task token's output of any size, and histories of
any length. Installed in the moto server process, this module refuses, as Step
Functions does:

- ``StartExecution`` with an input over 262,144 bytes, and ``SendTaskSuccess`` with an
  output over it: ``ValidationException``;
- an execution's history reaching 25,000 events: event 25,000 is ``ExecutionFailed``
  (unless it is ``ExecutionSucceeded``), the execution ends ``FAILED`` with
  ``States.Runtime``, and nothing more is recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from fsnode.localstack import aws_limits
from fsnode.localstack.moto_patches import Patches

HISTORY_CAUSE = "The execution reached the maximum number of history events ({limit})."
_patches = Patches()


class HistoryLimitReached(Exception):
    """Raised into the interpreter when an execution's history is full."""


def history_limit() -> int:
    """25,000, or the lower count a test set (``FSNODE_LOCAL_STATES_HISTORY_EVENTS``)."""
    return int(
        aws_limits.lowered(aws_limits.STATES_HISTORY_EVENTS_ENV, aws_limits.STATES_HISTORY_EVENTS)
    )


def install() -> None:
    """Patch moto's Step Functions in this process (once)."""
    from moto.stepfunctions.parser.asl.eval.event.event_manager import EventManager
    from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication
    from moto.stepfunctions.responses import StepFunctionResponse

    if _patches.active:
        return
    start_execution = StepFunctionResponse.start_execution
    send_task_success = StepFunctionResponse.send_task_success
    add_event = EventManager.add_event
    reflect: Callable[[Any], None] = BaseExecutionWorkerCommunication._reflect_execution_status

    def sized_start(self: Any) -> Any:
        _refuse_oversized(self._get_param("input"), "input")
        return start_execution(self)

    def sized_success(self: Any) -> Any:
        _refuse_oversized(self._get_param("output"), "output")
        return send_task_success(self)

    def bounded_add_event(
        self: Any,
        context: Any,
        event_type: Any,
        event_details: Any = None,
        timestamp: Any = None,
        update_source_event_id: bool = True,
    ) -> int:
        from moto.stepfunctions.parser.api import ExecutionFailedEventDetails, HistoryEventType
        from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

        if getattr(self, "_fsnode_history_full", False):
            return int(context.last_published_event_id or 0)  # the history is closed
        limit = history_limit()
        if (
            len(self._history_event_list) + 1 >= limit
            and event_type != HistoryEventType.ExecutionSucceeded
        ):
            self._fsnode_history_full = True
            add_event(
                self,
                context,
                HistoryEventType.ExecutionFailed,
                # moto's EventDetails lists every kind as required; an event has one.
                cast(
                    "EventDetails",
                    {
                        "executionFailedEventDetails": ExecutionFailedEventDetails(
                            error="States.Runtime", cause=HISTORY_CAUSE.format(limit=limit)
                        )
                    },
                ),
            )
            raise HistoryLimitReached(HISTORY_CAUSE.format(limit=limit))
        return int(
            add_event(self, context, event_type, event_details, timestamp, update_source_event_id)
        )

    def reflect_limit(self: Any) -> None:
        from moto.stepfunctions.parser.api import ExecutionStatus

        reflect(self)
        events = self.execution.exec_worker.env.event_manager
        if getattr(events, "_fsnode_history_full", False):
            self.execution.exec_status = ExecutionStatus.FAILED
            self.execution.error = "States.Runtime"
            self.execution.cause = HISTORY_CAUSE.format(limit=history_limit())

    _patches.set(StepFunctionResponse, "start_execution", sized_start)
    _patches.set(StepFunctionResponse, "send_task_success", sized_success)
    _patches.set(EventManager, "add_event", bounded_add_event)
    _patches.set(BaseExecutionWorkerCommunication, "_reflect_execution_status", reflect_limit)


def _refuse_oversized(value: str | None, field: str) -> None:
    from moto.core.exceptions import JsonRESTError

    if value is not None and len(value.encode()) > aws_limits.STATES_PAYLOAD_BYTES:
        raise JsonRESTError(
            "ValidationException",
            f"1 validation error detected: Value at '{field}' failed to satisfy constraint: "
            f"Member must have length less than or equal to {aws_limits.STATES_PAYLOAD_BYTES}",
        )


def uninstall() -> None:
    """Undo ``install`` (tests that patch moto in their own process)."""
    _patches.undo()
