"""The conformance suite of slimta-storage: vectors, the runner and the Python adapter.

:func:`main` is ``slimta-storage conformance``. :class:`Runner` plays one
case at a time against a :class:`Target`: the Python engines in this
process (:class:`InProcessTarget`) or any binding behind an adapter
command (:class:`AdapterTarget`). The Python adapter itself runs with
``python -m slimta.storage.conformance.adapter``.
"""

from ._adapter import AdapterServer, load_factory
from ._adapter_client import AdapterStartError, AdapterTarget
from ._cli import VECTORS_VARIABLE, find_vectors, main
from ._engines import CAPABILITIES, EngineFactory, EngineTable, ManualClock, Outcome, default_factory
from ._results import CaseResult, StepFailure
from ._runner import EngineChoice, Runner
from ._targets import BindingInfo, InProcessTarget, Target, TargetFailure
from ._values import from_wire, resolve, same, to_wire
from ._vectors import Case, VectorError, VectorSet, load_vectors

__all__ = [
    "CAPABILITIES",
    "VECTORS_VARIABLE",
    "AdapterServer",
    "AdapterStartError",
    "AdapterTarget",
    "BindingInfo",
    "Case",
    "CaseResult",
    "EngineChoice",
    "EngineFactory",
    "EngineTable",
    "InProcessTarget",
    "ManualClock",
    "Outcome",
    "Runner",
    "StepFailure",
    "Target",
    "TargetFailure",
    "VectorError",
    "VectorSet",
    "default_factory",
    "find_vectors",
    "from_wire",
    "load_factory",
    "load_vectors",
    "main",
    "resolve",
    "same",
    "to_wire",
]
