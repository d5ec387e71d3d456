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

"""Runs: ``POST|GET /v1/instances/{uuid}/runs`` and ``GET /v1/runs/{id}``.

A POST stores a pending run first and then casts it to the agent, so that the run the
202 returns is already readable, and the agent's notifications (start, end, error)
move it on from there.
"""

import flask
import oslo_messaging as messaging
from oslo_utils import timeutils
from oslo_utils import uuidutils

from nova_vmi.api import common
from nova_vmi.api import errors
from nova_vmi.api import instances
from nova_vmi.api import pagination
from nova_vmi.db import api as db
from nova_vmi.db import exception as db_exception
from nova_vmi.objects import run as run_obj
from nova_vmi.policies import runs as rules

bp = flask.Blueprint('runs', __name__)
INSTANCE_RUNS = '/v1/instances/<instance_uuid>/runs'


def _probes(body, stored_policy):
    """Asked-for probes, else the instance policy's, else every configured probe."""
    if body.get('probes'):
        return body['probes']
    if stored_policy and stored_policy.get('probes'):
        return list(stored_policy['probes'])
    return list(common.services().conf.api.probes)


def _cast(ctx, host, run):
    request = run_obj.VMIRunRequest(
        run_id=run['id'], instance_uuid=run['instance_uuid'], probes=run['probes'],
        trigger='on_demand', consistency=run.get('consistency'),
        requested_at=run['requested_at'])
    try:
        common.services().agent_api.introspect(ctx, host, request)
    except messaging.MessagingException as exc:
        raise errors.ServiceUnavailable('run %s is stored but could not be sent to the agent '
                                        'on %s: %s' % (run['id'], host, exc))


@bp.post(INSTANCE_RUNS)
def create(instance_uuid):
    uuid = common.parse_uuid(instance_uuid, 'instance')
    instance = instances.find(uuid)
    common.authorize(rules.CREATE, instance.get('project_id'))
    body = common.json_body(common.services().validators['run'], empty={})
    ctx = common.context()
    stored_policy = db.policy_get(ctx, uuid)
    if stored_policy and stored_policy.get('on_demand') is False:
        raise errors.Conflict('the policy of instance %s does not allow on-demand runs '
                              '(triggers.on_demand is false)' % uuid)
    host = instances.agent_host(instance)
    run = db.run_create(ctx, {
        'id': uuidutils.generate_uuid(), 'instance_uuid': uuid,
        'project_id': instance.get('project_id'), 'host': host,
        'probes': _probes(body, stored_policy), 'trigger': 'on_demand',
        'consistency': body.get('consistency'),
        'requested_at': timeutils.utcnow(with_timezone=True)})
    _cast(ctx, host, run)
    location = flask.url_for('runs.show', run_id=run['id'], _external=True)
    return {'run': run}, 202, {'Location': location}


@bp.get(INSTANCE_RUNS)
def index(instance_uuid):
    uuid = common.parse_uuid(instance_uuid, 'instance')
    instance = instances.find(uuid)
    common.authorize(rules.LIST, instance.get('project_id'))
    pagination.check_query(('limit', 'marker'))
    limit, marker = pagination.page_params(common.services().conf.api.max_limit)
    if marker is not None:
        marker = common.parse_uuid(marker, 'marker (run)')
    try:
        runs = db.run_list(common.context(), instance_uuid=uuid, limit=limit + 1,
                           marker=marker)
    except db_exception.MarkerNotFound:
        raise errors.BadRequest('marker %s is not a run of instance %s' % (marker, uuid))
    runs, links = pagination.page(runs, limit)
    return {'runs': runs, 'links': links}


def _visible_project(run):
    """The project whose rules apply to ``run``, or 404 if the caller may not see it."""
    ctx = common.context()
    if common.is_admin() or (run.get('project_id') and run['project_id'] == ctx.project_id):
        return run.get('project_id')
    if run.get('project_id'):
        raise not_found(run['id'])
    try:
        return instances.find(run['instance_uuid']).get('project_id')
    except errors.NotFound:
        raise not_found(run['id'])


def not_found(run_id):
    return errors.NotFound('run %s could not be found' % run_id)


@bp.get('/v1/runs/<run_id>')
def show(run_id):
    run_id = common.parse_uuid(run_id, 'run')
    run = db.run_get(common.context(), run_id)
    if run is None:
        raise not_found(run_id)
    common.authorize(rules.GET, _visible_project(run))
    return {'run': run}
