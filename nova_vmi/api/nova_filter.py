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

"""A paste filter for nova-api: ``/servers/{id}/os-introspection`` reaches our handlers.

An operator adds ``os_introspection`` to the ``keystone`` pipeline of nova-api's
``[composite:openstack_compute_api_v21]``, after ``keystonecontext``::

    [filter:os_introspection]
    paste.filter_factory = nova_vmi.api.nova_filter:filter_factory
    config_file = /etc/nova-vmi/nova-vmi.conf

Routes (``PATH_INFO`` below ``/v2.1``; everything else goes on to Nova untouched):

==========================================  ======================================
``/servers/{id}/os-introspection``          ``/v1/instances/{id}/runs`` (GET, POST)
``/servers/{id}/os-introspection/runs``     ``/v1/instances/{id}/runs``
``/servers/{id}/os-introspection/runs/{r}`` ``/v1/runs/{r}``
``/servers/{id}/os-introspection/policy``   ``/v1/instances/{id}/policy``
``/servers/{id}/os-introspection/findings`` ``/v1/instances/{id}/findings``
==========================================  ======================================

The caller is Nova's: the context comes from ``environ['nova.context']`` (Nova already
authenticated the request), and visibility is Nova's own answer to a ``GET
/servers/{id}`` subrequest through the rest of its pipeline, policy included.  The
nova-vmi configuration is a file of its own (``config_file``), read into a private
ConfigOpts: nova-api's options are not ours (both have an ``[api]`` group).  Inside
nova-api this module does not pick an oslo.service backend: nova-api has chosen one.
"""

import io
import json
import re

from oslo_config import cfg

from nova_vmi.api import app as api_app
from nova_vmi.api import common
from nova_vmi.compute import nova as nova_client
from nova_vmi.conf import api as api_conf
from nova_vmi.conf import database as database_conf
from nova_vmi.conf import nova as nova_conf
from nova_vmi import context as vmi_context

DEFAULT_CONFIG_FILE = '/etc/nova-vmi/nova-vmi.conf'
_PATH = re.compile(r'^/servers/(?P<server>[^/]+)/os-introspection'
                   r'(?P<rest>/[^?]*)?$')
_ROUTES = (
    (re.compile(r'^/?$'), '/v1/instances/{server}/runs'),
    (re.compile(r'^/runs/?$'), '/v1/instances/{server}/runs'),
    (re.compile(r'^/runs/(?P<run>[^/]+)/?$'), '/v1/runs/{run}'),
    (re.compile(r'^/policy/?$'), '/v1/instances/{server}/policy'),
    (re.compile(r'^/findings/?$'), '/v1/instances/{server}/findings'),
)
#: Below os-introspection but none of the above: our API's 404.
UNKNOWN = '/v1/os-introspection/unknown'


def route(path):
    """Our API's path for nova-api's ``path``; None when the path is Nova's own."""
    match = _PATH.match(path)
    if match is None:
        return None
    rest = match.group('rest') or ''
    for pattern, target in _ROUTES:
        sub = pattern.match(rest)
        if sub is not None:
            return target.format(server=match.group('server'), **sub.groupdict())
    return UNKNOWN


def context_from_nova(nova_context):
    """Our RequestContext for the caller Nova authenticated."""
    return vmi_context.RequestContext(
        user_id=nova_context.user_id, project_id=nova_context.project_id,
        roles=list(getattr(nova_context, 'roles', []) or []),
        auth_token=getattr(nova_context, 'auth_token', None),
        request_id=getattr(nova_context, 'request_id', None),
        system_scope=getattr(nova_context, 'system_scope', None),
        overwrite=False)


class SubrequestLookup:
    """Asks the rest of nova-api's pipeline ``GET /servers/{id}`` as the caller."""

    def __init__(self, app, environ):
        self.app = app
        self.environ = environ

    def get_server(self, context, uuid):
        environ = dict(self.environ)
        environ.update({'REQUEST_METHOD': 'GET', 'PATH_INFO': '/servers/%s' % uuid,
                        'QUERY_STRING': '', 'CONTENT_LENGTH': '0',
                        'wsgi.input': io.BytesIO(b'')})
        environ.pop('CONTENT_TYPE', None)
        status = []

        def start_response(line, headers, exc_info=None):
            status.append(int(line.split(' ', 1)[0]))

        body = b''.join(self.app(environ, start_response))
        if status and status[0] in (403, 404):
            return None
        if status != [200]:
            raise nova_client.NovaUnavailable('nova-api answered GET /servers/%s with %s'
                                              % (uuid, status))
        try:
            return nova_client.server_view(json.loads(body)['server'])
        except (ValueError, KeyError, TypeError) as exc:
            raise nova_client.NovaUnavailable('unreadable server document: %s' % exc)


class IntrospectionFilter:
    """Sends os-introspection paths to ``vmi_app``, everything else to nova-api."""

    def __init__(self, app, vmi_app):
        self.app = app
        self.vmi_app = vmi_app

    def __call__(self, environ, start_response):
        target = route(environ.get('PATH_INFO', ''))
        if target is None:
            return self.app(environ, start_response)
        sub = dict(environ)
        sub['PATH_INFO'] = target
        sub.pop(common.CONTEXT_KEY, None)
        nova_context = environ.get('nova.context')
        if nova_context is not None:
            sub[common.CONTEXT_KEY] = context_from_nova(nova_context)
        sub[common.SERVER_LOOKUP_KEY] = SubrequestLookup(self.app, environ)
        return self.vmi_app(sub, start_response)


def load_conf(config_file):
    conf = cfg.ConfigOpts()
    for module in (api_conf, database_conf, nova_conf):
        module.register_opts(conf)
    conf(['--config-file', config_file], project='nova-vmi')
    return conf


def filter_factory(global_conf, **local_conf):
    """paste's ``filter_factory``: ``config_file`` names nova-vmi's configuration."""
    conf = load_conf(local_conf.get('config_file', DEFAULT_CONFIG_FILE))
    vmi_app = api_app.create_app(conf)

    def _filter(app):
        return IntrospectionFilter(app, vmi_app)
    return _filter
