"""A fake ModelArts v1 + IAM API with life-like services, for the demo, tests and benchmarks."""

from exporter.simulator.app import create_app, serve
from exporter.simulator.faults import Faults, RequestStats
from exporter.simulator.scenario import (
    DEFAULT_PROJECT_ID,
    SimEvent,
    SimModel,
    SimService,
    Simulation,
    SimUpdate,
)

__all__ = [
    "DEFAULT_PROJECT_ID",
    "Faults",
    "RequestStats",
    "SimEvent",
    "SimModel",
    "SimService",
    "SimUpdate",
    "Simulation",
    "create_app",
    "serve",
]
