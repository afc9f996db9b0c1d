"""ingress-nginx in a running lab: the controller pod runs Debian's nginx with its prefix, config,
pid and logs under /run/k8s-netlab/<lab>/ingress (never /etc/nginx or /var/log); whenever the
Ingresses or their endpoints change, the config is rendered again, tested (`nginx -t`) and
nginx reloaded (`nginx -s reload`), as the controller does."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from lab import host
from lab.controlplane import ingress
from lab.controlplane.controller import Controller
from lab.controlplane.endpoints import endpoint_slices, initial_readiness
from lab.errors import LabError
from lab.controlplane.state import ClusterState, EndpointSliceState, container_key
from lab.host.record import LabRecord
from lab.dns import records
from lab.ingress import nginx, tls
from lab.node.processes import alive

IMAGE = ingress.IMAGE
CA = "ca.crt"  # in the lab's run directory: what hosts give `curl --cacert`


def run_dir(record: LabRecord) -> Path:
    return record.subdir("ingress")


def ca_path(record: LabRecord) -> Path:
    return record.dir / CA


def _nginx(record: LabRecord) -> list[str]:
    d = run_dir(record)
    return ["nginx", "-e", str(d / "error.log"), "-p", f"{d}/", "-c", str(d / "nginx.conf")]


def argv(record: LabRecord) -> list[str]:
    """The controller container's program (nginx stays in the foreground: `daemon off;`)."""
    return _nginx(record)


def write(state: ClusterState, slices: Sequence[EndpointSliceState], record: LabRecord) -> bool:
    """Certificates (the lab's CA issues what no Secret gives) and nginx.conf; True if the config changed."""
    d = run_dir(record)
    certs = record.subdir("ingress", "certs")
    record.subdir("ingress", "tmp")
    ca_key = d / "ca.key"
    if not (host.path_exists(ca_path(record)) and host.path_exists(ca_key)):  # made once; its key stays here (0600)
        _write_pair(ca_path(record), ca_key, tls.new_ca(state.lab))
    for name, given in nginx.certificate_hosts(state).items():
        crt, key = certs / f"{name}.crt", certs / f"{name}.key"
        if given is not None:
            host.write_file(crt, given[0])
            host.write_file(key, given[1], mode=0o600)
        elif not host.path_exists(crt):
            _write_pair(crt, key, tls.issue(host.read_bytes(ca_path(record)), host.read_bytes(ca_key),
                                            "ingress.local" if name == nginx.DEFAULT_CERT else name.replace("_wildcard", "*")))
    _publish_names(state, record)
    conf = nginx.render(state, slices, str(d))
    path = d / "nginx.conf"
    if host.path_exists(path) and host.read_text(path) == conf:
        return False
    host.replace_file(path, conf)
    return True


def _write_pair(crt: Path, key: Path, pems: tuple[bytes, bytes]) -> None:
    host.write_file(key, pems[1], mode=0o600)
    host.write_file(crt, pems[0])


def _publish_names(state: ClusterState, record: LabRecord) -> None:
    """The Ingress hosts, pointed at the controller's node, for the lab's outside resolver (a hosts
    file in the directory its dnsmasq watches)."""
    entry = ingress.entry(state)
    text = "".join(f"{entry} {h}\n" for h in ingress.hosts(state)) if entry else ""
    path = record.subdir(*records.UPSTREAM_HOSTS) / "ingress"
    if not host.path_exists(path) or host.read_text(path) != text:
        # written outside the watched directory, then renamed into it: never read half-written
        host.replace_file(path, text, tmp=path.parent.parent / "upstream-ingress.tmp")


def update(state: ClusterState, slices: Sequence[EndpointSliceState], record: LabRecord) -> None:
    """Follow a change of Ingresses or endpoints: a new config is tested, then nginx reloads it."""
    if ingress.controller(state) is None or not write(state, slices, record):
        return
    if running(state, record):
        host.run([*_nginx(record), "-t", "-q"])
        host.run([*_nginx(record), "-s", "reload"])


def running(state: ClusterState, record: LabRecord) -> bool:
    pod = ingress.controller(state)
    key = pod and container_key(pod, next(c for c in pod.containers if c.image == IMAGE))
    return bool(key) and key in record.pids and alive(record.pids[key])


def prepare(state: ClusterState, record: LabRecord) -> None:
    """Before the controller starts (`lab up`, or a `lab apply` that adds it): certificates and a
    first config, with endpoints as they stand before any probe."""
    if ingress.controller(state) is not None and not running(state, record):
        write(state, endpoint_slices(state, initial_readiness(state)), record)


def wait_ready(state: ClusterState, timeout: float = 3.0) -> None:
    """`lab up` returns with nginx listening, so the first readiness round (and a `lab check` right
    after) never finds the controller starting."""
    pod = ingress.controller(state)
    if pod is None:
        return

    if not host.listens(pod.netns, pod.ip, ingress.HTTP, timeout):
        raise LabError(f"ingress-nginx ({pod.key}) does not answer on {pod.ip}:{ingress.HTTP} after {timeout:g} s; "
                       f"see `lab logs -n {pod.namespace} {pod.name}` and its error.log")


CONTROLLER = Controller(
    ingress.ADDON.name, addon=ingress.ADDON, images={IMAGE: lambda record, _pod: argv(record)},
    pods_starting=lambda state, record, _pods: prepare(state, record),
    wait_ready=wait_ready, sync=lambda record, diff: update(diff.new, diff.new_slices, record))
