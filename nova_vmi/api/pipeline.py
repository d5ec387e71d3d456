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

"""Building the API's WSGI pipeline from ``api-paste.ini``.

``[composite:main]`` uses :func:`pipeline_factory`, which picks the pipeline named by
``[api] auth_strategy`` (``keystone`` or ``noauth``) and sends the version document
(``/`` and ``/v1``) through the ``public`` pipeline, which has no authentication, so
that clients can discover the API before they hold a token.
"""

import os

from oslo_config import cfg
from paste import deploy

from nova_vmi.api import app as api_app

_state = {'conf': None, 'apps': {}}
PUBLIC_PATHS = ('', '/', '/v1', '/v1/')
#: The source tree's etc/nova-vmi: where a development checkout finds api-paste.ini.
SOURCE_ETC = os.path.join(os.path.dirname(__file__), '..', '..', 'etc', 'nova-vmi')


def set_conf(conf):
    """The ConfigOpts the paste factories build on (cfg.CONF unless set)."""
    _state['conf'] = conf


def get_conf():
    return _state['conf'] or cfg.CONF


class PublicPathRouter:
    """Sends the version document to ``public``, everything else to ``private``."""

    def __init__(self, private, public):
        self.private = private
        self.public = public

    def __call__(self, environ, start_response):
        if environ.get('PATH_INFO', '') in PUBLIC_PATHS:
            return self.public(environ, start_response)
        return self.private(environ, start_response)


def _build(loader, names):
    names = names.split()
    app = loader.get_app(names[-1])
    for name in reversed(names[:-1]):
        app = loader.get_filter(name)(app)
    return app


def pipeline_factory(loader, global_conf, **local_conf):
    """The ``[composite]`` factory: the pipeline of ``[api] auth_strategy``."""
    private = _build(loader, local_conf[get_conf().api.auth_strategy])
    if 'public' not in local_conf:
        return private
    return PublicPathRouter(private, _build(loader, local_conf['public']))


def app_factory(global_conf, **local_conf):
    """The ``[app]`` factory: one Flask app per configuration, however often named."""
    conf = get_conf()
    apps = _state['apps']
    if id(conf) not in apps:
        apps[id(conf)] = api_app.create_app(conf)
    return apps[id(conf)]


def load_app(conf, name='main'):
    """The pipeline of ``conf``'s ``[api] api_paste_config``."""
    set_conf(conf)
    path = conf.api.api_paste_config
    if not os.path.isabs(path):
        path = conf.find_file(path) or os.path.join(SOURCE_ETC, path)
    if not os.path.exists(path):
        raise cfg.ConfigFilesNotFoundError([conf.api.api_paste_config])
    return deploy.loadapp('config:%s' % os.path.abspath(path), name=name)
