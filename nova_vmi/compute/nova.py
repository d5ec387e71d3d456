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

"""Nova lookups through keystoneauth1: visibility with the caller's token, host with ours.

Visibility is Nova's answer to ``GET /servers/{id}`` made with the *caller's* token: a
server Nova does not show the caller is a 404 here too.  The host attribute
(``OS-EXT-SRV-ATTR:host``) is visible to admins only by Nova's default policy, so when
the caller's view lacks it the same request is made with the service credentials of
``[nova]``.
"""

import logging
import threading

from keystoneauth1 import exceptions as ks_exceptions
from keystoneauth1 import loading as ks_loading

LOG = logging.getLogger(__name__)

HOST_ATTR = 'OS-EXT-SRV-ATTR:host'


class NovaUnavailable(Exception):
    """Nova did not give a usable answer (down, misconfigured, a 5xx)."""


def server_view(server):
    """The parts of a Nova server document nova-vmi keeps."""
    return {'uuid': server.get('id'), 'project_id': server.get('tenant_id'),
            'host': server.get(HOST_ATTR), 'name': server.get('name')}


class NovaClient:
    """``[nova]``'s adapter to the Compute API, made on first use."""

    def __init__(self, conf):
        self._conf = conf
        self._adapter = None
        self._lock = threading.Lock()

    def adapter(self):
        with self._lock:
            if self._adapter is None:
                group = 'nova'
                auth = ks_loading.load_auth_from_conf_options(self._conf, group)
                session = ks_loading.load_session_from_conf_options(self._conf, group,
                                                                    auth=auth)
                self._adapter = ks_loading.load_adapter_from_conf_options(
                    self._conf, group, session=session, auth=auth)
            return self._adapter

    def _get_server(self, uuid, **kwargs):
        try:
            resp = self.adapter().get('/servers/%s' % uuid, raise_exc=False, **kwargs)
        except ks_exceptions.ClientException as exc:
            raise NovaUnavailable('Nova could not be reached: %s' % exc) from exc
        if resp.status_code in (403, 404):
            return None
        if resp.status_code != 200:
            raise NovaUnavailable('Nova answered GET /servers/%s with HTTP %d'
                                  % (uuid, resp.status_code))
        try:
            return server_view(resp.json()['server'])
        except (ValueError, KeyError, TypeError) as exc:
            raise NovaUnavailable('Nova sent a server document nova-vmi cannot read: %s'
                                  % exc) from exc

    def get_server(self, context, uuid):
        """The server as the caller of ``context`` sees it; None when Nova hides it."""
        if not context.auth_token:
            raise NovaUnavailable('the request carries no token to ask Nova with')
        return self._get_server(uuid, authenticated=False,
                                headers={'X-Auth-Token': context.auth_token})

    def get_host(self, uuid):
        """The compute host of ``uuid`` with the service credentials; None if unknown."""
        server = self._get_server(uuid)
        return server and server['host']
