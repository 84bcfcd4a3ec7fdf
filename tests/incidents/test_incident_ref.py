"""One format for an incident's reference, read back the same way."""

from __future__ import annotations

from haltguard.incidents.models import Incident
from haltguard.incidents.rules import incident_id_of, incident_ref


def test_an_incident_reference_reads_back_to_its_id() -> None:
    assert incident_ref(42) == "INC-42"
    assert incident_id_of(incident_ref(42)) == 42
    assert Incident(id=7).ref == incident_ref(7)


def test_anything_else_is_not_an_incident_reference() -> None:
    assert incident_id_of("INC-") is None
    assert incident_id_of("MNT-3") is None
    assert incident_id_of("INC-3x") is None
