"""The job machinery shared by the trainer, quantizer and evaluator.

A persistent job table and append-only event log in SQL (`store`), and a `JobManager`
that queues jobs, runs them through a `Runner`, cancels them, recovers them after a
restart and serves Watch streams that replay from a sequence number (`manager`), and
`finish_despite_cancel` for a runner's cleanup that no second cancel may cut short
(`shielding`).
"""

from forgeline.common.jobs.manager import JobContext, JobManager, JobResult, Runner
from forgeline.common.jobs.model import TERMINAL_STATES, Job, JobEvent
from forgeline.common.jobs.shielding import finish_despite_cancel
from forgeline.common.jobs.store import JobStore

__all__ = [
    "TERMINAL_STATES",
    "Job",
    "JobContext",
    "JobEvent",
    "JobManager",
    "JobResult",
    "JobStore",
    "Runner",
    "finish_despite_cancel",
]
