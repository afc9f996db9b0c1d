"""JSON Schema of topology files, for editors (yaml-language-server) and documentation."""
from __future__ import annotations

from lab.topology.lenient import IGNORED_FIELDS, IGNORED_KINDS
from lab.topology.model import Topology

_IGNORED = "accepted as a real API server accepts it, and ignored with a warning: it has no network meaning in the lab"


def topology_schema() -> dict:
    """Topology's schema as users write it (aliases such as `from`), plus the folder form of
    `manifests:` that lab.topology.load resolves before validation, and the fields the loader
    accepts and ignores (lab.topology.lenient), each described as such."""
    schema = Topology.model_json_schema(by_alias=True)
    manifests = schema["properties"]["manifests"]
    outer = {key: manifests.pop(key) for key in ("title", "default") if key in manifests}
    folder = {"type": "string", "description": "a folder of manifest YAML files, relative to the topology file"}
    schema["properties"]["manifests"] = {**outer, "anyOf": [manifests, folder]}
    for model, fields in IGNORED_FIELDS.items():  # an editor must not flag what `lab validate` accepts
        props = schema["$defs"][model]["properties"]
        props.update({name: {**props.get(name, {}), "description": _IGNORED} for name in fields})
    schema["$defs"]["IgnoredObject"]["description"] = f"kinds {', '.join(IGNORED_KINDS)}: {_IGNORED}"
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema, "title": "k8s-netlab topology"}
