# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""Keeps doc/notification_samples in step with the payload classes (as Nova does).

A field added to a payload without updating its sample, a version bump without a new
sample, or a priority or publisher that changes shape fails here.
"""

import os

import pytest

from nova_vmi.objects import base
from nova_vmi.objects import notification
from tests.unit.objects import samples

EVENT_TYPES = sorted(notification.PAYLOADS)
SAMPLE_HOST = 'compute-1'


def _nested_primitives(primitive):
    """Every ``nova_object`` primitive inside ``primitive``, itself included."""
    if isinstance(primitive, dict):
        if 'nova_object.name' in primitive:
            yield primitive
        for value in primitive.values():
            yield from _nested_primitives(value)
    elif isinstance(primitive, list):
        for value in primitive:
            yield from _nested_primitives(value)


def _expected_priority(event_type, payload):
    priority = notification.PAYLOADS[event_type][1]
    if priority is None:
        priority = notification.finding_priority(payload.severity)
    return priority.upper()


def test_every_event_type_has_a_sample():
    missing = [t for t in EVENT_TYPES if not os.path.exists(samples.path(t))]
    assert not missing, 'no sample in %s for %s' % (samples.SAMPLE_DIR, missing)


def test_every_sample_names_a_known_event_type():
    known = {os.path.basename(samples.path(t)) for t in EVENT_TYPES}
    files = {name for name in os.listdir(samples.SAMPLE_DIR) if name.endswith('.json')}
    assert files <= known, 'samples for unknown event types: %s' % sorted(files - known)


@pytest.mark.parametrize('event_type', EVENT_TYPES)
def test_sample_payload_deserialises_into_the_registered_class_and_version(event_type):
    cls = notification.PAYLOADS[event_type][0]
    sample = samples.load(event_type)
    payload = cls.from_primitive(sample['payload'])
    assert type(payload) is cls, 'expected a %s, got %s' % (cls.__name__, type(payload))
    assert sample['payload']['nova_object.version'] == cls.VERSION, (
        '%s is at %s: regenerate its sample' % (cls.__name__, cls.VERSION))


@pytest.mark.parametrize('event_type', EVENT_TYPES)
def test_sample_data_keys_are_exactly_the_class_fields(event_type):
    sample = samples.load(event_type)
    for primitive in _nested_primitives(sample['payload']):
        cls = base.VMIObjectRegistry.obj_classes()[primitive['nova_object.name']][0]
        assert set(primitive['nova_object.data']) == set(cls.fields), (
            '%s sample of %s: data keys differ from the fields; update the sample'
            % (event_type, cls.__name__))
        assert primitive['nova_object.version'] == cls.VERSION, (
            '%s sample holds %s %s, the class is at %s'
            % (event_type, cls.__name__, primitive['nova_object.version'], cls.VERSION))


@pytest.mark.parametrize('event_type', EVENT_TYPES)
def test_sample_payload_survives_a_round_trip_unchanged(event_type):
    cls = notification.PAYLOADS[event_type][0]
    sample = samples.load(event_type)
    again = samples.without_changes(cls.from_primitive(sample['payload']).to_primitive())
    assert again == sample['payload'], 'to_primitive(from_primitive(sample)) should be the sample'


@pytest.mark.parametrize('event_type', EVENT_TYPES)
def test_sample_envelope_matches_event_type_priority_and_publisher(event_type):
    sample = samples.load(event_type)
    payload = notification.PAYLOADS[event_type][0].from_primitive(sample['payload'])
    assert set(sample) == {'priority', 'event_type', 'publisher_id', 'payload'}
    assert sample['event_type'] == event_type
    assert sample['publisher_id'] == notification.publisher_id(payload.host)
    assert sample['publisher_id'] == 'vmi-agent:%s' % SAMPLE_HOST
    assert sample['priority'] == _expected_priority(event_type, payload), (
        'priority of %s should follow PAYLOADS / finding_priority' % event_type)


def test_run_end_sample_carries_pslist_records_and_a_hidden_task_finding():
    payload = notification.VMIRunPayload.from_primitive(
        samples.load(notification.RUN_END)['payload'])
    pslist = [r for r in payload.results if r.probe == 'pslist']
    assert len(pslist) == 1 and len(pslist[0].records) == 2, 'two pslist records expected'
    assert set(pslist[0].records[0]) >= {'pid', 'ppid', 'comm', 'uid'}
    assert [(f.probe, f.kind) for f in payload.findings] == [('hidden_tasks', 'hidden_task')]


@pytest.mark.parametrize('severity, priority', [
    ('low', 'warn'), ('medium', 'warn'), ('high', 'error'), ('critical', 'error')])
def test_finding_priority_is_error_from_high_up(severity, priority):
    assert notification.finding_priority(severity) == priority
