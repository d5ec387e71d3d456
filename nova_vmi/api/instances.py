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

"""Whether the caller may see an instance, and which agent host serves it.

Nova decides visibility when it is reachable (``[nova]`` configured, or the nova-api
pipeline's own lookup): what Nova hides from the caller is a 404 here, with the very
body of an instance that does not exist, so nothing leaks about other projects.
Without Nova the instances table decides: admins see every instance, others those
whose ``project_id`` is theirs.
"""

import flask
from oslo_utils import timeutils

from nova_vmi.api import common
from nova_vmi.api import errors
from nova_vmi.compute import nova as nova_client
from nova_vmi.db import api as db
from nova_vmi import heartbeats


def not_found(instance_uuid):
    return errors.NotFound('instance %s could not be found' % instance_uuid)


def _server_lookup(ctx):
    """Who answers for Nova: the pipeline's own lookup, else [nova] with the caller's token."""
    lookup = flask.request.environ.get(common.SERVER_LOOKUP_KEY)
    if lookup is None and ctx.auth_token:
        lookup = common.services().nova
    return lookup


def find(instance_uuid):
    """The instance row (plus ``nova_host``) if the caller may see it, else 404."""
    ctx = common.context()
    lookup = _server_lookup(ctx)
    if lookup is not None:
        try:
            server = lookup.get_server(ctx, instance_uuid)
        except nova_client.NovaUnavailable as exc:
            raise errors.ServiceUnavailable('cannot ask Nova whether instance %s is '
                                            'visible: %s' % (instance_uuid, exc))
        if server is None:
            raise not_found(instance_uuid)
        instance = db.instance_get(ctx, instance_uuid) or {'uuid': instance_uuid}
        learned = {key: server[key] for key in ('project_id', 'host', 'name')
                   if server[key] and server[key] != instance.get(key)}
        if learned:
            instance = db.instance_update(ctx, instance_uuid, **learned)
        instance['nova_host'] = server['host']
        return instance
    instance = db.instance_get(ctx, instance_uuid)
    if instance is None:
        raise not_found(instance_uuid)
    if not common.is_admin() and instance.get('project_id') != ctx.project_id:
        raise not_found(instance_uuid)
    instance['nova_host'] = None
    return instance


def agent_host(instance):
    """The host whose agent serves ``instance``: 409 when none is known, or it is down."""
    uuid = instance['uuid']
    host = instance.get('nova_host')
    nova = common.services().nova
    if not host and nova is not None:
        try:
            host = nova.get_host(uuid)
        except nova_client.NovaUnavailable:
            host = None
        if host:
            db.instance_update(common.context(), uuid, host=host)
    host = host or instance.get('host')
    if not host:
        raise errors.Conflict('no agent host is known for instance %s: Nova does not say '
                              'where it runs and no agent has reported it in a heartbeat'
                              % uuid)
    agent = {agent['host']: agent for agent in db.agent_list(common.context())}.get(host)
    if agent is None:
        raise errors.Conflict('instance %s runs on host %s, which has no introspection '
                              'agent (no heartbeat received from it)' % (uuid, host))
    intervals = common.services().conf.api.agent_down_intervals
    if not heartbeats.is_alive(agent, timeutils.utcnow(with_timezone=True), intervals):
        raise errors.Conflict('the introspection agent on host %s (instance %s) is down: '
                              'its last heartbeat was at %s'
                              % (host, uuid, agent.get('last_heartbeat')))
    return host
