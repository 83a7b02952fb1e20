"""The contracts between stages: plans.json as typed objects, and the label manager.

Everything after planning reads the plans through :class:`Plans` (``Plans.load(path)``) and asks
:class:`LabelManager` about classes, regions, the ignore label and the network's outputs.
"""

from autoseg.contracts.labels import LabelError, LabelManager
from autoseg.contracts.plans import (
    DEFAULT_RESAMPLING,
    PLANS_SCHEMA_VERSION,
    Architecture,
    ConfigurationPlan,
    Plans,
    PlansError,
)

__all__ = [
    "DEFAULT_RESAMPLING",
    "PLANS_SCHEMA_VERSION",
    "Architecture",
    "ConfigurationPlan",
    "LabelError",
    "LabelManager",
    "Plans",
    "PlansError",
]
