"""runcast: a GraphQL gateway for durable workflow runs."""

from __future__ import annotations

from runcast.errors import (
    AlreadyExists,
    BadUserInput,
    ConfigurationError,
    Forbidden,
    NotFound,
    NotTriggerable,
    OperationNotTrusted,
    PayloadTooLarge,
    PersistedQueryNotFound,
    PersistedQueryNotSupported,
    RateLimited,
    RuncastError,
    RunFinished,
    RunNotFinished,
    RunNotFound,
    Unauthenticated,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamUnavailable,
    WorkflowNotFound,
)
from runcast.models import (
    Credentials,
    Run,
    RunPage,
    RunStatus,
    RunWait,
    RunWaitReason,
    Step,
    Workflow,
    WorkflowKind,
)
from runcast.settings import Settings

__version__ = "0.1.0"

__all__ = [
    "AlreadyExists",
    "BadUserInput",
    "ConfigurationError",
    "Credentials",
    "Forbidden",
    "NotFound",
    "NotTriggerable",
    "OperationNotTrusted",
    "PayloadTooLarge",
    "PersistedQueryNotFound",
    "PersistedQueryNotSupported",
    "RateLimited",
    "Run",
    "RunFinished",
    "RunNotFinished",
    "RunNotFound",
    "RunPage",
    "RunStatus",
    "RunWait",
    "RunWaitReason",
    "RuncastError",
    "Settings",
    "Step",
    "Unauthenticated",
    "UpstreamError",
    "UpstreamProtocolError",
    "UpstreamUnavailable",
    "Workflow",
    "WorkflowKind",
    "WorkflowNotFound",
    "__version__",
]
