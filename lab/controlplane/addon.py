"""What an add-on is: the objects a controller installs in the cluster by itself, as kubeadm and
kind install CoreDNS and ingress-nginx's manifest installs its controller. Pure.

The plan asks the add-on registry (lab.controlplane.addons) for them and knows no add-on by name;
the controller that runs them names its add-on in its registration (Controller.addon), and the
controller registry (lab.runtime.controllers) checks at import that both list the same add-ons. An
add-on's image is the program its controller registers for it (Controller.images), and is one of
the names in lab/topology/kinds.py ADDON_IMAGES (the topology model, below, needs them).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class AddOn:
    name: str                                    # its controller's registered name
    image: str                                   # the image its containers run
    namespace: str                               # where its objects live (made when it is wanted)
    wanted: Callable[[Any], bool]                # topology -> does the lab install it
    # (topology, NodePorts the user's Services took) -> its Deployments and Services; [] when not wanted.
    # Its pods name their node (nodeName): add-ons are placed after the user's pods, which they never move.
    objects: Callable[[Any, set[int]], list]
