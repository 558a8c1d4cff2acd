"""The tasks the Engine runs, one module each, registered by request type (see registry.py).

Importing this package registers every built-in task; a new task is a module that calls
`register` (imported here to be built in, or from anywhere else to be added)."""

from .animate import AnimateRequest
from .edit import EDIT_TASK_CHOICES, EditRequest
from .extend import ExtendRequest
from .interpolate import InterpolateRequest
from .personalize import PersonalizeRequest
from .registry import TASKS, Inspection, Job, Task, register, task_for
from .sdedit import SDEditRequest
from .t2v import T2VRequest
from .upscale import UpscaleRequest

Request = (
    T2VRequest
    | EditRequest
    | SDEditRequest
    | PersonalizeRequest
    | UpscaleRequest
    | AnimateRequest
    | ExtendRequest
    | InterpolateRequest
)

__all__ = [
    "EDIT_TASK_CHOICES",
    "TASKS",
    "AnimateRequest",
    "EditRequest",
    "ExtendRequest",
    "Inspection",
    "InterpolateRequest",
    "Job",
    "PersonalizeRequest",
    "Request",
    "SDEditRequest",
    "T2VRequest",
    "Task",
    "UpscaleRequest",
    "register",
    "task_for",
]
