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

"""The API's own WSGI middleware: ``noauth`` and the request context.

``noauth`` stands in for keystonemiddleware in an embedded, single-user deployment only:
it trusts the ``X-User-Id`` / ``X-Project-Id`` / ``X-Roles`` headers (defaulting to an
admin), exactly the headers ``auth_token`` sets after validating a token.  The context
middleware then builds the same RequestContext either way.
"""

from keystonemiddleware import auth_token
from oslo_middleware import request_id

from nova_vmi.api import common
from nova_vmi.api import pipeline
from nova_vmi import context as vmi_context

NOAUTH_DEFAULTS = {
    'HTTP_X_USER_ID': 'noauth',
    'HTTP_X_PROJECT_ID': 'noauth',
    'HTTP_X_ROLES': 'admin,member,reader',
}


class NoAuthMiddleware:
    """Marks every request authenticated, with the identity its headers claim."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        for key, default in NOAUTH_DEFAULTS.items():
            if not environ.get(key):
                environ[key] = default
        environ['HTTP_X_IDENTITY_STATUS'] = 'Confirmed'
        return self.app(environ, start_response)


class ContextMiddleware:
    """Puts the caller's RequestContext in ``environ['nova_vmi.context']``.

    Only a request that ``auth_token`` (or ``noauth``) confirmed gets one; handlers that
    need an identity answer 401 without it.
    """

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        environ.pop(common.CONTEXT_KEY, None)
        if environ.get('HTTP_X_IDENTITY_STATUS') == 'Confirmed':
            environ[common.CONTEXT_KEY] = vmi_context.RequestContext.from_environ(environ)
        return self.app(environ, start_response)


def noauth_filter_factory(global_conf, **local_conf):
    return NoAuthMiddleware


def context_filter_factory(global_conf, **local_conf):
    return ContextMiddleware


def authtoken_filter_factory(global_conf, **local_conf):
    """keystonemiddleware's ``auth_token`` on the pipeline's configuration.

    ``[keystone_authtoken]`` is read from the ConfigOpts the API runs on (cfg.CONF in a
    deployment), not necessarily the global one.
    """
    local_conf.setdefault('oslo_config_config', pipeline.get_conf())
    return auth_token.filter_factory(global_conf, **local_conf)


def noauth_pipeline(app):
    """The ``noauth`` pipeline of api-paste.ini around ``app`` (tests, embedded use)."""
    return request_id.RequestId(NoAuthMiddleware(ContextMiddleware(app)))
