"""Who may ask the server what (pure).

A page on another site must not drive the lab through the user's browser, so every API request is
checked three ways: its Host is this server's (a name that is not ours, as DNS rebinding sends, is
refused), the browser does not say it comes from another site (Origin, Sec-Fetch-Site), and every
request that does work carries the token the server put in its own page (a cross-site page cannot
read it, and a custom header cannot be sent across sites without a preflight we never grant).

Actions are a closed list — node stop/start, fault add/clear — each admitted with its arguments
checked against the lab; nothing here names a program or runs a command.
"""
from __future__ import annotations

import hmac
import re
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import Mapping, Optional

from lab.controlplane.state import ClusterState

TOKEN_HEADER = "X-Lab-Token"
ACTIONS = ("node-stop", "node-start", "fault-add", "fault-clear")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,252}$")     # a target such as pod/default/web-1 or node/w1
_PARAM = re.compile(r"^[a-z][a-z_-]{0,31}$")


class Refused(Exception):
    """An HTTP status and the reason, said to the page."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _is_ip(text: str) -> bool:
    try:
        ip_address(text.strip("[]"))
        return True
    except ValueError:
        return False


def host_allowed(host_header: Optional[str], port: int, bound: str) -> bool:
    """The Host a browser sends for this server: localhost, an address literal, or the --host given,
    at our port. A DNS name of somebody else's (a rebinding attack) is not one of them."""
    if not host_header:
        return False
    name, sep, given_port = host_header.rpartition(":")
    if not sep or given_port != str(port):
        return False
    return name in ("localhost", bound) or _is_ip(name)


def check_request(headers: Mapping[str, str], port: int, bound: str) -> None:
    """Refuse (403) a request whose Host is not ours or that the browser marks as cross-site."""
    host = headers.get("Host")
    if not host_allowed(host, port, bound):
        raise Refused(403, f"Host {host!r} is not this server's (open http://127.0.0.1:{port}/ or the --host given)")
    origin = headers.get("Origin")
    if origin is not None and origin != f"http://{host}":
        raise Refused(403, f"cross-site request from {origin!r} refused")
    site = headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        raise Refused(403, f"cross-site request ({site}) refused")


def check_token(headers: Mapping[str, str], token: str) -> None:
    given = headers.get(TOKEN_HEADER) or ""
    if not token or not hmac.compare_digest(given.encode(), token.encode()):
        raise Refused(403, f"missing or wrong {TOKEN_HEADER}: reload the page served by this lab web")


@dataclass(frozen=True)
class Action:
    verb: str                         # one of ACTIONS
    node: str = ""                    # node-stop, node-start
    kind: str = ""                    # fault-add
    target: str = ""
    params: dict = field(default_factory=dict)
    fault_id: str = ""                # fault-clear ("" clears every fault)


def admit(body: object, state: ClusterState, allowed: bool) -> Action:
    """The action a POST asks for, with its arguments checked; Refused otherwise (every problem at once)."""
    if not allowed:
        raise Refused(403, "actions are off: start the server with lab web --allow-actions")
    if not isinstance(body, dict):
        raise Refused(400, "the body must be a JSON object such as {\"action\": \"node-stop\", \"node\": \"worker1\"}")
    verb = body.get("action")
    if verb not in ACTIONS:
        raise Refused(400, f"unknown action {verb!r}; actions: {', '.join(ACTIONS)}")
    if verb in ("node-stop", "node-start"):
        node = body.get("node")
        names = [n.name for n in state.nodes]
        if node not in names:
            raise Refused(400, f"no node {node!r} in lab {state.lab}; nodes: {', '.join(names)}")
        return Action(verb, node=node)
    if verb == "fault-clear":
        fid = body.get("id") or ""
        if not isinstance(fid, str) or fid and not re.fullmatch(r"f\d{1,6}", fid):
            raise Refused(400, f"fault id {fid!r}: give an id from the faults list (f1, f2, ...), or none for all")
        return Action(verb, fault_id=fid)
    return _fault_add(body)


def _fault_add(body: dict) -> Action:
    from lab.faults.model import validate

    kind, target, params = body.get("kind"), body.get("target"), body.get("params") or {}
    problems = []
    if not isinstance(kind, str) or not isinstance(target, str) or not _NAME.match(target):
        problems.append("fault-add needs kind and target, e.g. {\"kind\": \"link-down\", \"target\": \"node/worker1\"}")
    if not isinstance(params, dict) or not all(isinstance(k, str) and _PARAM.match(k) and isinstance(v, (str, int, float))
                                                for k, v in params.items()):
        problems.append("params must be an object of name: value (lab fault kinds lists each kind's)")
    if problems:
        raise Refused(400, "; ".join(problems))
    params = {k: str(v) for k, v in params.items()}
    problems = validate(kind, target, params)
    if problems:
        raise Refused(400, "; ".join(problems))
    return Action("fault-add", kind=kind, target=target, params=params)
