"""A small libcni: run a conflist's plugins per the CNI spec (env + JSON on stdin), from inside the
node's namespace (spawned by a thread that entered it: no nsenter process per call), with libcni's
semantics: ADD is all-or-nothing, DEL runs in reverse, may run twice and keeps going past errors.
Results are cached so DEL gets its prevResult."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from lab.errors import LabError
from lab import host

PLUGIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")
TIMEOUT = 30  # seconds a plugin may take; then it is killed (a stuck plugin of one's own cannot hold up lab down)


def find_plugin(kind: str, dirs: tuple[str, ...] = PLUGIN_DIRS) -> str:
    for d in dirs:
        path = os.path.join(d, kind)
        if host.executable(path):
            return path
    raise LabError(
        f"CNI plugin {kind!r} not found in {', '.join(PLUGIN_DIRS)}; "
        "install Debian's containernetworking-plugins (sudo make demo does it)"
    )


@dataclass(frozen=True)
class Attachment:
    """One pod interface: which sandbox, which interface, run from which node namespace."""

    container_id: str
    netns_path: str           # CNI_NETNS, the pod's namespace
    ifname: str
    node_netns: str           # where the plugin runs: the node's namespace (a /run/netns name)
    args: tuple[tuple[str, str], ...] = ()  # CNI_ARGS, e.g. K8S_POD_NAME, IP


class PluginError(LabError):
    pass


def _exec(plugin: str, command: str, conf: dict, att: Attachment, dirs: tuple[str, ...]) -> Optional[dict]:
    env = {
        "CNI_COMMAND": command, "CNI_CONTAINERID": att.container_id, "CNI_NETNS": att.netns_path,
        "CNI_IFNAME": att.ifname, "CNI_PATH": ":".join(dirs),
        "CNI_ARGS": ";".join(["IgnoreUnknown=1", *(f"{k}={v}" for k, v in att.args)]),
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    }
    argv = [find_plugin(plugin, dirs)]
    proc = host.run(argv, netns=att.node_netns, input=json.dumps(conf).encode(), env=env, timeout=TIMEOUT, check=False)
    if not proc.ok:
        try:
            err = json.loads(proc.stdout)
            detail = f"{err.get('msg', '')} {err.get('details', '')}".strip()
        except ValueError:
            detail = (proc.stdout + proc.stderr).strip() or ("timed out after 30s" if proc.code is None else "")
        raise PluginError(f"CNI {plugin} {command} for {att.container_id}/{att.ifname} failed: {detail}")
    out = proc.stdout.strip()
    try:
        return json.loads(out) if out else None
    except ValueError:
        raise PluginError(f"CNI {plugin} {command} for {att.container_id}/{att.ifname} printed no JSON result "
                          f"(the spec wants one on stdout): {out[:200]!r}") from None


def _plugin_conf(conflist: dict, plugin: dict, prev: Optional[dict]) -> dict:
    conf = {**plugin, "cniVersion": conflist["cniVersion"], "name": conflist["name"]}
    if prev is not None:
        conf["prevResult"] = prev
    return conf


class ResultCache:
    """libcni keeps results in /var/lib/cni; the lab keeps them under its own run directory."""

    def __init__(self, root: Path):
        self.root = root

    def _path(self, network: str, att: Attachment) -> Path:
        return self.root / f"{network}-{att.container_id}-{att.ifname}.json"

    def put(self, network: str, att: Attachment, result: dict) -> None:
        host.write_file(self._path(network, att), json.dumps(result))

    def get(self, network: str, att: Attachment) -> Optional[dict]:
        try:
            return json.loads(host.read_text(self._path(network, att)))
        except (OSError, ValueError):
            return None

    def drop(self, network: str, att: Attachment) -> None:
        host.remove(self._path(network, att))


def add(conflist: dict, att: Attachment, cache: ResultCache, extra_dirs: tuple[str, ...] = ()) -> dict:
    """ADD every plugin in order, each seeing the previous result; on failure undo what was done.
    extra_dirs: searched before the system's plugin folders."""
    dirs = extra_dirs + PLUGIN_DIRS
    done: list[dict] = []
    result: Optional[dict] = None
    try:
        for plugin in conflist["plugins"]:
            result = _exec(plugin["type"], "ADD", _plugin_conf(conflist, plugin, result), att, dirs)
            done.append(plugin)
    except LabError:
        for plugin in reversed(done):
            try:
                _exec(plugin["type"], "DEL", _plugin_conf(conflist, plugin, result), att, dirs)
            except LabError:
                pass  # the original error is the one to report
        raise
    cache.put(conflist["name"], att, result or {})
    return result or {}


def delete(conflist: dict, att: Attachment, cache: ResultCache, extra_dirs: tuple[str, ...] = ()) -> list[str]:
    """DEL every plugin in reverse; returns the errors instead of stopping at the first."""
    dirs = extra_dirs + PLUGIN_DIRS
    prev = cache.get(conflist["name"], att)
    errors = []
    for plugin in reversed(conflist["plugins"]):
        try:
            _exec(plugin["type"], "DEL", _plugin_conf(conflist, plugin, prev), att, dirs)
        except LabError as e:
            errors.append(str(e))
    cache.drop(conflist["name"], att)
    return errors

