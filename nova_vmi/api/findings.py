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

"""Findings: ``GET /v1/findings?instance=&severity=&since=`` and per instance.

Without ``instance`` an admin gets every project's findings and anyone else their own
project's; with it, the instance must be visible to the caller (404 otherwise).
"""

import datetime

import flask
from oslo_utils import timeutils

from nova_vmi.api import common
from nova_vmi.api import errors
from nova_vmi.api import instances
from nova_vmi.api import pagination
from nova_vmi.db import api as db
from nova_vmi.db import exception as db_exception
from nova_vmi.objects import fields
from nova_vmi.policies import findings as rules

bp = flask.Blueprint('findings', __name__)
QUERY = ('instance', 'severity', 'since', 'limit', 'marker')


def _severity(args):
    """None, or the list of severities of ``?severity=high,critical``."""
    if 'severity' not in args:
        return None
    wanted = args['severity'].split(',')
    for severity in wanted:
        if severity not in fields.SEVERITIES:
            raise errors.BadRequest('severity must be one of %s (or several, comma-'
                                    'separated), not %r'
                                    % (', '.join(fields.SEVERITIES), severity))
    return wanted


def _since(args):
    since = args.get('since')
    if since is None:
        return None
    try:
        when = timeutils.parse_isotime(since)
    except ValueError:
        raise errors.BadRequest('since must be an ISO 8601 time such as '
                                '2026-11-27T08:00:00Z, not %r' % since)
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when.astimezone(datetime.timezone.utc)


def _int_marker(value):
    return int(value)


def _list(instance=None):
    args = flask.request.args
    pagination.check_query(QUERY)
    ctx = common.context()
    project_id = None
    if instance is not None:
        common.authorize(rules.LIST, instance.get('project_id'))
    else:
        common.authorize(rules.LIST, ctx.project_id)
        if not common.is_admin():
            project_id = ctx.project_id
    severity, since = _severity(args), _since(args)
    limit, marker = pagination.page_params(common.services().conf.api.max_limit,
                                           marker_type=_int_marker)
    try:
        found = db.finding_list(ctx, instance_uuid=instance and instance['uuid'],
                                project_id=project_id, severity=severity, since=since,
                                limit=limit + 1, marker=marker)
    except db_exception.MarkerNotFound:
        raise errors.BadRequest('marker %s is not a finding of this list' % marker)
    found, links = pagination.page(found, limit)
    return {'findings': found, 'links': links}


@bp.get('/v1/findings')
def index():
    uuid = flask.request.args.get('instance')
    instance = None
    if uuid is not None:
        instance = instances.find(common.parse_uuid(uuid, 'instance'))
    return _list(instance)


@bp.get('/v1/instances/<instance_uuid>/findings')
def instance_index(instance_uuid):
    instance = instances.find(common.parse_uuid(instance_uuid, 'instance'))
    return _list(instance)
