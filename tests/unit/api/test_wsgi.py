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

"""``nova_vmi.api.wsgi``: the entry point uwsgi and gunicorn load."""

import logging

from oslo_config import cfg
import pytest
import werkzeug.test

from nova_vmi.api import pipeline
from nova_vmi.api import wsgi
from nova_vmi.db import api as db
from tests.unit.api import conftest as base


def test_init_application_builds_the_pipeline_of_the_configured_files(tmp_path, schema_db):
    base.fresh_conf(tmp_path, schema_db)      # a migrated database at tmp_path
    conf_file = tmp_path / 'nova-vmi.conf'
    conf_file.write_text('[api]\nauth_strategy = noauth\n'
                         '[database]\nconnection = sqlite:///%s/vmi.sqlite\n' % tmp_path)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        app = wsgi.init_application({wsgi.CONFIG_FILES_ENV: str(conf_file)},
                                    conf=cfg.ConfigOpts())
        client = werkzeug.test.Client(app)
        assert client.get('/').json['versions'][0]['id'] == 'v1'
        resp = client.get('/v1/agents')
        assert resp.status_code == 200 and resp.json == {'agents': []}, resp.json
        assert resp.headers['x-openstack-request-id'].startswith('req-'), resp.headers
    finally:
        root.handlers[:] = handlers     # oslo.log's setup() replaced pytest's
        root.setLevel(level)
        pipeline.set_conf(None)
        pipeline._state['apps'].clear()
        db.dispose()


def test_only_application_is_built_lazily():
    with pytest.raises(AttributeError):
        wsgi.something_else
