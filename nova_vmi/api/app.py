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

"""The Flask application of the API: a static route table, JSON in and out.

Routes (one module per resource, no extensions):

* ``/``, ``/v1``: :mod:`nova_vmi.api.versions`
* ``/v1/agents``: :mod:`nova_vmi.api.agents`
* ``/v1/instances/{uuid}/policy``: :mod:`nova_vmi.api.instance_policy`
* ``/v1/instances/{uuid}/runs``, ``/v1/runs/{id}``: :mod:`nova_vmi.api.runs`
* ``/v1/findings``, ``/v1/instances/{uuid}/findings``: :mod:`nova_vmi.api.findings`
"""

import datetime

import flask
from flask import json as flask_json

from nova_vmi.api import agents
from nova_vmi.api import common
from nova_vmi.api import errors
from nova_vmi.api import findings
from nova_vmi.api import instance_policy
from nova_vmi.api import runs
from nova_vmi.api import versions
from nova_vmi.db import api as db

BLUEPRINTS = (versions.bp, agents.bp, instance_policy.bp, runs.bp, findings.bp)


def _json_default(value):
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return value.astimezone(datetime.timezone.utc).isoformat().replace('+00:00', 'Z')
    return flask_json.provider.DefaultJSONProvider.default(value)


class JSONProvider(flask_json.provider.DefaultJSONProvider):
    """Flask's JSON, with times in ISO 8601 UTC (Flask's default is an HTTP date)."""

    default = staticmethod(_json_default)
    sort_keys = False


def create_app(conf, agent_api=None, nova=None, enforcer=None):
    """The API as a WSGI app on ``conf`` ([api], [nova], [database] registered).

    ``agent_api`` (an AgentAPI) and ``nova`` (a NovaClient) are made from ``conf`` when
    not given.  The app points :mod:`nova_vmi.db.api` at ``conf``'s database, and
    expects the context middleware in front of it
    (:mod:`nova_vmi.api.middleware`).
    """
    db.configure(conf)
    app = flask.Flask('nova_vmi.api')
    app.json = JSONProvider(app)
    app.url_map.strict_slashes = False
    app.extensions[common.EXTENSION] = common.Services(
        conf, enforcer=enforcer, agent_api=agent_api, nova=nova)
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    errors.register(app)
    return app
