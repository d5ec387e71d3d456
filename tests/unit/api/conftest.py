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

"""The API on SQLite through the real DB layer, behind the real noauth pipeline.

One boundary is replaced: the agent RPC cast (``nova_vmi.rpc.AgentAPI``).  There is no
agent here to receive it, so :class:`AgentAPIRecorder` records the calls the API makes
instead, with the same signatures.
"""

import shutil
import uuid

from oslo_config import cfg
import pytest

from nova_vmi.api import app as api_app
from nova_vmi.api import middleware
from nova_vmi.conf import api as api_conf
from nova_vmi.conf import database as database_conf
from nova_vmi.conf import nova as nova_conf
from nova_vmi import context as vmi_context
from nova_vmi.db import api as db
from nova_vmi.db import migration
from nova_vmi.objects import notification

HOST = 'compute1'
PROJECT = 'a' * 32
OTHER_PROJECT = 'b' * 32
MINE = str(uuid.UUID(int=1))          # PROJECT's instance on HOST
THEIRS = str(uuid.UUID(int=2))        # OTHER_PROJECT's instance on HOST
UNKNOWN = str(uuid.UUID(int=3))       # no such instance anywhere
HOSTLESS = str(uuid.UUID(int=4))      # PROJECT's, but no agent has reported it


class AgentAPIRecorder:
    """Stands for the agent RPC client (the message bus and the agent): records casts."""

    def __init__(self):
        self.calls = []
        self.fail_with = None

    def _record(self, *call):
        if self.fail_with is not None:
            raise self.fail_with
        self.calls.append(call)

    def introspect(self, ctxt, host, run):
        self._record('introspect', host, run)

    def set_policy(self, ctxt, host, instance_uuid, policy):
        self._record('set_policy', host, instance_uuid, policy)


def make_conf(tmp_path):
    conf = cfg.ConfigOpts()
    api_conf.register_opts(conf)
    nova_conf.register_opts(conf)
    database_conf.register_opts(conf)
    conf([])
    conf.set_override('connection', 'sqlite:///%s' % (tmp_path / 'vmi.sqlite'),
                      group='database')
    return conf


def heartbeat(host=HOST, guests=(MINE, THEIRS), interval=10):
    return notification.VMIHeartbeatPayload(
        host=host, driver='qemu', capabilities=['live', 'pause'], interval=interval,
        version='1.0',
        guests=[notification.VMIGuestPayload(uuid=g, name='instance-%s' % g[-1],
                                             triggers=['debugcon']) for g in guests])


def seed(conf):
    ctx = vmi_context.get_admin_context()
    db.agent_heartbeat(ctx, heartbeat())
    db.instance_update(ctx, MINE, project_id=PROJECT)
    db.instance_update(ctx, THEIRS, project_id=OTHER_PROJECT)
    db.instance_update(ctx, HOSTLESS, project_id=PROJECT)


class Env:
    def __init__(self, conf, app, agent):
        self.conf = conf
        self.app = app
        self.agent = agent
        self.client = app.test_client()

    @staticmethod
    def headers(roles='member,reader', project=PROJECT, user='u1'):
        return {'X-User-Id': user, 'X-Project-Id': project, 'X-Roles': roles}

    def admin(self):
        return self.headers(roles='admin,member,reader')

    def member(self, project=PROJECT):
        return self.headers(project=project)

    def reader(self, project=PROJECT):
        return self.headers(roles='reader', project=project)


@pytest.fixture(scope='session')
def schema_db(tmp_path_factory):
    """A database file migrated once (alembic is the slow part); tests get copies."""
    path = tmp_path_factory.mktemp('schema')
    migration.db_sync(make_conf(path))
    return path / 'vmi.sqlite'


def fresh_conf(tmp_path, schema_db):
    shutil.copy(schema_db, tmp_path / 'vmi.sqlite')
    return make_conf(tmp_path)


@pytest.fixture
def env(tmp_path, schema_db):
    conf = fresh_conf(tmp_path, schema_db)
    agent = AgentAPIRecorder()
    app = api_app.create_app(conf, agent_api=agent)
    app.wsgi_app = middleware.noauth_pipeline(app.wsgi_app)
    seed(conf)
    yield Env(conf, app, agent)
    db.dispose()
