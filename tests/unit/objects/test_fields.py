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

"""The field types nova-vmi adds to oslo's (Timestamp, Json, the enums), on the objects
that use them."""

import datetime
import uuid

import pytest

from nova_vmi.objects import fields
from nova_vmi.objects import notification
from nova_vmi.objects import run

UTC = datetime.timezone.utc


def _request(**overrides):
    values = dict(run_id=str(uuid.uuid4()), instance_uuid=str(uuid.uuid4()),
                  probes=['pslist'], trigger='on_demand', consistency=None,
                  requested_at=datetime.datetime(2026, 11, 27, 7, 12, 3, 418207, tzinfo=UTC))
    values.update(overrides)
    return run.VMIRunRequest(**values)


def _finding(**overrides):
    values = dict(run_id=str(uuid.uuid4()), instance_uuid=str(uuid.uuid4()), host='h',
                  probe='hidden_tasks', kind='hidden_task', severity='high', summary='s',
                  evidence={})
    values.update(overrides)
    return notification.VMIFindingPayload(**values)


def _round_trip(obj):
    return type(obj).from_primitive(obj.to_primitive())


def test_timestamp_keeps_microseconds_on_the_wire():
    request = _request()
    primitive = request.to_primitive()
    assert primitive['nova_object.data']['requested_at'] == '2026-11-27T07:12:03.418207Z'
    assert _round_trip(request).requested_at == request.requested_at, (
        'microseconds should survive to_primitive/from_primitive')
    assert _round_trip(request).requested_at.microsecond == 418207


def test_timestamp_of_another_zone_is_sent_in_utc():
    plus_two = datetime.timezone(datetime.timedelta(hours=2))
    at = datetime.datetime(2026, 11, 27, 9, 0, 0, 5, tzinfo=plus_two)
    primitive = _request(requested_at=at).to_primitive()
    assert primitive['nova_object.data']['requested_at'] == '2026-11-27T07:00:00.000005Z'
    assert _round_trip(_request(requested_at=at)).requested_at == at


def test_naive_timestamp_is_taken_as_utc():
    naive = datetime.datetime(2026, 11, 27, 7, 0, 0, 1)
    got = _round_trip(_request(requested_at=naive)).requested_at
    assert got == naive.replace(tzinfo=UTC), 'a naive time should be read as UTC'


def test_timestamp_garbage_on_the_wire_is_a_value_error():
    primitive = _request().to_primitive()
    primitive['nova_object.data']['requested_at'] = 'not a time'
    with pytest.raises(ValueError, match='not a VMIRunRequest'):
        run.VMIRunRequest.from_primitive(primitive)


def test_json_field_keeps_nested_json_values():
    evidence = {'views': ['pid_table'], 'pid': 1337, 'hidden': True, 'x': None, 'f': 0.5,
                'nested': {'list': [[1, 2], {'a': 'b'}]}}
    assert _round_trip(_finding(evidence=evidence)).evidence == evidence


@pytest.mark.parametrize('value', [{1, 2}, object(), {'evidence': b'bytes'},
                                   [datetime.datetime(2026, 1, 1)]],
                         ids=['set', 'object', 'bytes-inside', 'datetime-inside'])
def test_json_field_rejects_values_json_cannot_carry(value):
    with pytest.raises(ValueError, match='evidence is not JSON-serialisable'):
        _finding(evidence=value)


def test_json_field_rejects_non_json_records_of_a_probe_result():
    with pytest.raises(ValueError, match='records is not JSON-serialisable'):
        notification.VMIProbeResultPayload(probe='pslist', records=[{'pid': {1}}],
                                           seconds=0.1)


@pytest.mark.parametrize('severity', fields.SEVERITIES)
def test_severity_field_accepts_each_severity(severity):
    assert _round_trip(_finding(severity=severity)).severity == severity


def test_severity_field_rejects_an_unknown_severity():
    with pytest.raises(ValueError):
        _finding(severity='urgent')


@pytest.mark.parametrize('name, good, bad', [
    ('trigger', 'guest', 'cron'),
    ('consistency', 'snapshot', 'frozen'),
])
def test_trigger_and_consistency_fields_accept_their_values_only(name, good, bad):
    assert getattr(_round_trip(_request(**{name: good})), name) == good
    with pytest.raises(ValueError):
        _request(**{name: bad})


def test_enum_values_are_the_documented_ones():
    assert fields.SEVERITIES == ('low', 'medium', 'high', 'critical')
    assert fields.TRIGGERS == ('on_demand', 'periodic', 'guest')
    assert fields.CONSISTENCY_MODES == ('live', 'pause', 'snapshot')
