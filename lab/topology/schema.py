"""JSON Schema of topology files, for editors (yaml-language-server) and documentation."""
from __future__ import annotations

from lab.topology.model import Topology


def topology_schema() -> dict:
    """Topology's schema as users write it (aliases such as `from`), plus the folder form of
    `manifests:` that lab.topology.load resolves before validation."""
    schema = Topology.model_json_schema(by_alias=True)
    manifests = schema["properties"]["manifests"]
    outer = {key: manifests.pop(key) for key in ("title", "default") if key in manifests}
    folder = {"type": "string", "description": "a folder of manifest YAML files, relative to the topology file"}
    schema["properties"]["manifests"] = {**outer, "anyOf": [manifests, folder]}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema, "title": "k8s-netlab topology"}
