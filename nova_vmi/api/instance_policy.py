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

"""``/v1/instances/{uuid}/policy``: which probes run on an instance, and what starts them.

The API's body nests the triggers (``triggers: {on_demand, periodic_seconds, guest}``);
the agent's ``VMIPolicy`` and the stored body keep them flat.
"""

import flask
import oslo_messaging as messaging

from nova_vmi.api import common
from nova_vmi.api import errors
from nova_vmi.api import instances
from nova_vmi.db import api as db
from nova_vmi.objects import policy as policy_obj
from nova_vmi.policies import instance_policy as rules

bp = flask.Blueprint('instance_policy', __name__)
PATH = '/v1/instances/<instance_uuid>/policy'
TRIGGERS = ('on_demand', 'periodic_seconds', 'guest')


def to_object(body):
    """The VMIPolicy of a validated API body (unset fields take their defaults)."""
    policy = policy_obj.VMIPolicy.default(body['probes'])
    for name, value in body.get('triggers', {}).items():
        setattr(policy, name, value)
    if 'consistency' in body:
        policy.consistency = body['consistency']
    if 'guest_trigger_rate' in body:
        policy.guest_trigger_rate = float(body['guest_trigger_rate'])
    try:
        policy.validate()
    except ValueError as exc:
        raise errors.BadRequest('invalid policy: %s' % exc)
    return policy


def flat(policy):
    return {name: getattr(policy, name) for name in policy_obj.VMIPolicy.fields}


def view(stored):
    """The API form of a stored policy body."""
    return {'probes': stored.get('probes', []),
            'triggers': {name: stored.get(name) for name in TRIGGERS},
            'consistency': stored.get('consistency'),
            'guest_trigger_rate': stored.get('guest_trigger_rate'),
            'created_at': stored.get('created_at'),
            'updated_at': stored.get('updated_at')}


def _instance(instance_uuid, rule):
    uuid = common.parse_uuid(instance_uuid, 'instance')
    instance = instances.find(uuid)
    common.authorize(rule, instance.get('project_id'))
    return instance


def _cast(ctx, host, uuid, policy):
    try:
        common.services().agent_api.set_policy(ctx, host, uuid, policy)
    except messaging.MessagingException as exc:
        raise errors.ServiceUnavailable('the policy of instance %s is stored but could not '
                                        'be sent to the agent on %s: %s' % (uuid, host, exc))


@bp.get(PATH)
def show(instance_uuid):
    instance = _instance(instance_uuid, rules.GET)
    stored = db.policy_get(common.context(), instance['uuid'])
    if stored is None:
        raise errors.NotFound('instance %s has no introspection policy: its agent applies '
                              'the default (on-demand runs only)' % instance['uuid'])
    return {'policy': view(stored)}


@bp.put(PATH)
def update(instance_uuid):
    instance = _instance(instance_uuid, rules.SET)
    body = common.json_body(common.services().validators['policy'])
    policy = to_object(body)
    host = instances.agent_host(instance)
    ctx = common.context()
    stored = db.policy_set(ctx, instance['uuid'], flat(policy))
    _cast(ctx, host, instance['uuid'], policy)
    return {'policy': view(stored)}


@bp.delete(PATH)
def delete(instance_uuid):
    instance = _instance(instance_uuid, rules.DELETE)
    ctx = common.context()
    if not db.policy_delete(ctx, instance['uuid']):
        raise errors.NotFound('instance %s has no introspection policy to delete'
                              % instance['uuid'])
    try:
        host = instances.agent_host(instance)
    except errors.Conflict:
        host = None  # no agent to tell: it starts from the default when it sees the guest
    if host:
        _cast(ctx, host, instance['uuid'], None)
    return '', 204
