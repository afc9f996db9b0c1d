"""A pod network's runtime, found through its kind: the Backend names the module (frr for bgp,
fabric_runtime for cloud-routes) and that module's RUNTIME says how to start, wait for and stop it.

The kind names it as a string, imported here, because the kinds are pure and sit in a layer below
the modules that start processes; this module sits above both. host-gw, vxlan and vpc are kernel
state only."""
from __future__ import annotations

import importlib
from typing import Optional

from lab import routing
from lab.routing.kind import Runtime


def of(network: str) -> Optional[Runtime]:
    """The backend's runtime, or None when it is kernel state only."""
    module = routing.of(network).runtime
    return importlib.import_module(module).RUNTIME if module else None
