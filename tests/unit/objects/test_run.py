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

"""VMIRunRequest's wire form, and VMIObject.from_primitive's refusal of anything else."""

import datetime

import pytest

from nova_vmi.objects import notification
from nova_vmi.objects import policy
from nova_vmi.objects import run

RUN_ID = '4f2c8a91-6d3e-4b7a-9c15-2e8f0d6a7b34'
INSTANCE = 'b7e3d1c2-58a4-4f96-8e0b-c3a9f1d2e456'
AT = datetime.datetime(2026, 11, 27, 7, 12, 3, 418207, tzinfo=datetime.timezone.utc)


def _request(**overrides):
    values = dict(run_id=RUN_ID, instance_uuid=INSTANCE, probes=['pslist', 'hidden_tasks'],
                  trigger='periodic', consistency='pause', requested_at=AT)
    values.update(overrides)
    return run.VMIRunRequest(**values)


def test_run_request_round_trips_every_field():
    original = _request()
    again = run.VMIRunRequest.from_primitive(original.to_primitive())
    assert type(again) is run.VMIRunRequest
    for name in run.VMIRunRequest.fields:
        assert getattr(again, name) == getattr(original, name), 'field %s changed' % name


def test_run_request_wire_form_is_novas():
    primitive = _request().to_primitive()
    assert primitive['nova_object.name'] == 'VMIRunRequest'
    assert primitive['nova_object.namespace'] == 'nova_vmi'
    assert primitive['nova_object.version'] == run.VMIRunRequest.VERSION
    assert primitive['nova_object.data']['requested_at'] == '2026-11-27T07:12:03.418207Z'


def test_run_request_defaults_to_on_demand_and_the_policys_consistency():
    request = run.VMIRunRequest(run_id=RUN_ID, instance_uuid=INSTANCE, probes=['pslist'],
                                requested_at=AT)
    request.obj_set_defaults()
    again = run.VMIRunRequest.from_primitive(request.to_primitive())
    assert (again.trigger, again.consistency) == ('on_demand', None)


@pytest.mark.parametrize('garbage', [
    None, 'nova_object', 42, [], {}, {'nova_object.name': 'VMIRunRequest'},
    {'nova_object.name': 'VMIRunRequest', 'nova_object.namespace': 'nova_vmi',
     'nova_object.version': '1.0', 'nova_object.data': 'not a dict'},
    {'nova_object.name': 'VMIRunRequest', 'nova_object.namespace': 'nova_vmi',
     'nova_object.version': '1.0', 'nova_object.data': ['run_id']},
    {'nova_object.name': 'NoSuchThing', 'nova_object.namespace': 'nova_vmi',
     'nova_object.version': '1.0', 'nova_object.data': {}},
], ids=repr)
def test_from_primitive_of_garbage_is_a_value_error(garbage):
    with pytest.raises(ValueError, match='^not a VMIRunRequest: '):
        run.VMIRunRequest.from_primitive(garbage)


def test_from_primitive_of_another_namespace_is_a_value_error():
    primitive = _request().to_primitive()
    primitive['nova_object.namespace'] = 'nova'
    with pytest.raises(ValueError, match='^not a VMIRunRequest: '):
        run.VMIRunRequest.from_primitive(primitive)


def test_from_primitive_of_a_newer_major_version_is_a_value_error():
    primitive = _request().to_primitive()
    primitive['nova_object.version'] = '2.0'
    with pytest.raises(ValueError, match='^not a VMIRunRequest: '):
        run.VMIRunRequest.from_primitive(primitive)


def test_from_primitive_of_an_invalid_field_value_is_a_value_error():
    primitive = _request().to_primitive()
    primitive['nova_object.data']['trigger'] = 'cron'
    with pytest.raises(ValueError, match='^not a VMIRunRequest: '):
        run.VMIRunRequest.from_primitive(primitive)


def test_from_primitive_of_another_class_is_a_value_error():
    primitive = policy.VMIPolicy.default(['pslist']).to_primitive()
    with pytest.raises(ValueError, match='^expected a VMIRunRequest, got a VMIPolicy$'):
        run.VMIRunRequest.from_primitive(primitive)


def test_from_primitive_of_a_subclass_is_accepted_by_the_base_class():
    """A run.error payload is a run payload too (VMIRunErrorPayload extends it)."""
    error = notification.VMIRunErrorPayload(
        run_id=RUN_ID, instance_uuid=INSTANCE, host='h', trigger='guest', probes=['pslist'],
        consistency='live', triggered_at=AT, error='gone', error_type='GuestVanished')
    got = notification.VMIRunPayload.from_primitive(error.to_primitive())
    assert type(got) is notification.VMIRunErrorPayload
    with pytest.raises(ValueError, match='expected a VMIRunErrorPayload, got a VMIRunPayload'):
        notification.VMIRunErrorPayload.from_primitive(
            notification.VMIRunPayload(run_id=RUN_ID).to_primitive())
