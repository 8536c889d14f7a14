"""The CRD shipped in the chart, the example, and the code agree with each other."""

from __future__ import annotations

from typing import Any

import yaml

from easyclaw.agents.jobtypes.echo import ECHO
from easyclaw.core.jobtypes import JobTypeRegistry
from easyclaw.operator.resource import GROUP, KIND, PLURAL, VERSION, Phase
from easyclaw.operator.spec import EasyClawJobSpec, parse_spec
from easyclaw.operator.status import STATUS_KEYS
from tests.support.paths import REPO_ROOT

CRD_PATH = REPO_ROOT / "charts" / "easyclaw" / "crds" / "easyclawjob.yaml"
EXAMPLE_PATH = REPO_ROOT / "examples" / "easyclawjob.yaml"


def load(path: Any) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    return document


def version_of(crd: dict[str, Any]) -> dict[str, Any]:
    [version] = crd["spec"]["versions"]
    return version


def test_crd_names_the_resource_the_operator_watches() -> None:
    crd = load(CRD_PATH)
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["metadata"]["name"] == f"{PLURAL}.{GROUP}"
    assert crd["spec"]["group"] == GROUP
    assert crd["spec"]["scope"] == "Namespaced"
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"]) == (KIND, PLURAL, ["ecj"])
    version = version_of(crd)
    assert (version["name"], version["served"], version["storage"]) == (VERSION, True, True)
    assert version["subresources"] == {"status": {}}
    columns = [column["name"] for column in version["additionalPrinterColumns"]]
    assert columns == ["Type", "Phase", "Attempts", "Age", "Job"]


def test_crd_schema_matches_the_spec_the_operator_validates_and_the_status_it_writes() -> None:
    schema = version_of(load(CRD_PATH))["schema"]["openAPIV3Schema"]
    spec_schema = schema["properties"]["spec"]
    aliases = {field.alias or name for name, field in EasyClawJobSpec.model_fields.items()}
    required = {
        field.alias or name
        for name, field in EasyClawJobSpec.model_fields.items()
        if field.is_required()
    }
    assert set(spec_schema["properties"]) == aliases
    assert set(spec_schema["required"]) == required
    assert spec_schema["properties"]["payload"]["type"] == "object"
    status_schema = schema["properties"]["status"]
    assert set(status_schema["properties"]) == set(STATUS_KEYS)
    assert status_schema["properties"]["phase"]["enum"] == [phase.value for phase in Phase]


def test_the_example_is_a_valid_easyclawjob() -> None:
    example = load(EXAMPLE_PATH)
    assert example["apiVersion"] == f"{GROUP}/{VERSION}"
    assert example["kind"] == KIND
    request = parse_spec(example["spec"], JobTypeRegistry([ECHO]))
    assert request.type == "ECHO"
