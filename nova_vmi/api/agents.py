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

"""``GET /v1/agents``: the compute hosts' agents, what they can do, whether they live."""

import flask
from oslo_utils import timeutils

from nova_vmi.api import common
from nova_vmi.db import api as db
from nova_vmi import heartbeats
from nova_vmi.policies import agents as rules

bp = flask.Blueprint('agents', __name__)


def view(agent, now, intervals):
    return {'host': agent['host'], 'driver': agent.get('driver'),
            'capabilities': agent.get('capabilities') or [],
            'version': agent.get('version'), 'interval': agent.get('interval'),
            'last_heartbeat': agent.get('last_heartbeat'),
            'alive': heartbeats.is_alive(agent, now, intervals)}


@bp.get('/v1/agents')
def index():
    ctx = common.context()
    common.authorize(rules.LIST, ctx.project_id)
    now = timeutils.utcnow(with_timezone=True)
    intervals = common.services().conf.api.agent_down_intervals
    return {'agents': [view(agent, now, intervals) for agent in db.agent_list(ctx)]}
