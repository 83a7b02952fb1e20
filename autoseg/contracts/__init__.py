"""The contracts between stages: plans.json, the architecture, the selection and the case properties
as typed objects, and the label manager.

Everything after planning reads the plans through :class:`Plans` (``Plans.load(path)``) and asks
:class:`LabelManager` about classes, regions, the ignore label and the network's outputs;
prediction follows ``selection.json`` through :class:`Selection`, and maps arrays back to a case's
grid through its :class:`CaseProperties`.
"""

from autoseg.contracts.architecture import Architecture
from autoseg.contracts.case import DEFAULT_RESAMPLING, CaseProperties, Resampling
from autoseg.contracts.labels import LabelError, LabelManager
from autoseg.contracts.plans import PLANS_SCHEMA_VERSION, ConfigurationPlan, Plans
from autoseg.contracts.reading import ContractError, PlansError

__all__ = [
    "DEFAULT_RESAMPLING",
    "PLANS_SCHEMA_VERSION",
    "Architecture",
    "CaseProperties",
    "ConfigurationPlan",
    "ContractError",
    "LabelError",
    "LabelManager",
    "Plans",
    "PlansError",
    "Resampling",
]
