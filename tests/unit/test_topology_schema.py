"""The exported JSON Schema describes topology files as users write them."""
from __future__ import annotations

import json

from lab.topology.schema import topology_schema


def test_schema_shape():
    schema = topology_schema()
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert schema["title"] == "k8s-netlab topology"
    assert {"name", "cluster", "underlay", "nodes", "hosts", "manifests", "checks"} <= set(schema["properties"])
    assert set(schema["required"]) == {"name", "nodes"}
    json.dumps(schema)  # plain JSON, ready to write to a file


def test_schema_uses_aliases_and_forbids_unknown_fields():
    check = topology_schema()["$defs"]["CheckSpec"]
    assert "from" in check["properties"] and "from_" not in check["properties"]
    assert check["additionalProperties"] is False


def test_manifests_may_be_a_folder():
    kinds = [option.get("type") for option in topology_schema()["properties"]["manifests"]["anyOf"]]
    assert kinds == ["array", "string"]


def test_fields_and_kinds_the_loader_ignores_are_listed_as_ignored():
    defs = topology_schema()["$defs"]
    for model, field in (("Container", "resources"), ("PodSpec", "serviceAccountName"), ("ObjectMeta", "annotations"),
                         ("StatefulSetSpec", "volumeClaimTemplates"), ("ServiceSpec", "healthCheckNodePort"),
                         ("HTTPGetAction", "httpHeaders")):
        assert "ignored with a warning" in defs[model]["properties"][field]["description"], (model, field)
    assert "ServiceAccount" in defs["IgnoredObject"]["description"]
    assert "ports" in defs["Container"]["properties"] and "ignored" not in str(defs["Container"]["properties"]["ports"])
