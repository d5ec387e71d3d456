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

"""A small client of the introspection API on a keystoneauth1 session.

Each method is one API call and returns the JSON the API answered (lists follow the
``next`` links).  Every failure becomes one :class:`ClientError` whose message is one
line a user can act on: the API's own error message, or which endpoint could not be
reached.
"""

from urllib import parse

from keystoneauth1 import adapter
from keystoneauth1 import exceptions as ksa_exc

SERVICE_TYPE = 'introspection'
# Lists follow ``next`` links; this bounds a misbehaving server's link loop.
MAX_PAGES = 10000


class ClientError(Exception):
    """One line that says what went wrong; ``status`` is the HTTP status, if any."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


def configured_endpoint(config):
    """The endpoint override in an osc cloud ``config`` dict, or None (the catalog).

    ``--os-introspection-endpoint`` (or ``introspection_endpoint_override`` in
    clouds.yaml) wins; with ``--os-auth-type none``, ``--os-endpoint`` serves too.
    """
    for key in ('introspection_endpoint', 'introspection_endpoint_override'):
        if config.get(key):
            return config[key]
    if config.get('auth_type') == 'none':
        return (config.get('auth') or {}).get('endpoint')
    return None


def error_message(status, body, text=''):
    """The one-line message of an error response (the API's ``error.message``)."""
    error = body.get('error') if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get('message'):
        message = str(error['message'])
    else:
        message = ' '.join(text.split())[:200] or 'no error message'
    return '%s (HTTP %s)' % (' '.join(message.split()), status)


def _query(params):
    return {key: value for key, value in params.items() if value is not None}


class Client:
    """The introspection API v1."""

    def __init__(self, session, endpoint=None, interface=None, region_name=None):
        self.endpoint = endpoint
        self.adapter = adapter.Adapter(
            session=session, service_type=SERVICE_TYPE, interface=interface,
            region_name=region_name, endpoint_override=endpoint)

    def _where(self):
        if self.endpoint:
            return self.endpoint
        try:
            return self.adapter.get_endpoint() or 'the introspection endpoint'
        except ksa_exc.ClientException:
            return 'the introspection endpoint'

    def request(self, method, url, body=None, params=None):
        """The decoded JSON (None for an empty body) of a 2xx answer to one request."""
        kwargs = {'raise_exc': False, 'headers': {'Accept': 'application/json'}}
        if body is not None:
            kwargs['json'] = body
        if params:
            kwargs['params'] = params
        try:
            response = self.adapter.request(url, method, **kwargs)
        except (ksa_exc.EndpointNotFound, ksa_exc.MissingAuthPlugin):
            raise ClientError(
                'no introspection endpoint: the service catalog has no service of type '
                '%r; give --os-introspection-endpoint (or OS_INTROSPECTION_ENDPOINT)'
                % SERVICE_TYPE)
        except ksa_exc.ConnectFailure as exc:
            raise ClientError('cannot connect to the introspection API at %s: %s'
                              % (self._where(), _reason(exc)))
        except ksa_exc.ConnectionError as exc:
            raise ClientError('no answer from the introspection API at %s: %s'
                              % (self._where(), _reason(exc)))
        return self._decode(response)

    @staticmethod
    def _decode(response):
        try:
            body = response.json() if response.content else None
        except ValueError:
            body = None
            if response.ok:
                raise ClientError('the introspection API answered %s %s with a body '
                                  'that is not JSON' % (response.status_code,
                                                        response.reason))
        if not response.ok:
            raise ClientError(error_message(response.status_code, body, response.text),
                              status=response.status_code)
        return body

    def _list(self, url, key, params, limit=None):
        """Every item of a paginated list (at most ``limit``), following ``next``."""
        items = []
        params = dict(params)
        if limit is not None:
            params['limit'] = limit
        for _ in range(MAX_PAGES):
            body = self.request('GET', url, params=_query(params)) or {}
            items.extend(body.get(key) or [])
            if limit is not None and len(items) >= limit:
                return items[:limit]
            next_marker = _next_marker(body)
            if not next_marker:
                return items
            params['marker'] = next_marker
            if limit is not None:
                params['limit'] = limit - len(items)
        return items

    # Policies
    def get_policy(self, instance_uuid):
        return self.request('GET', '/v1/instances/%s/policy' % instance_uuid)['policy']

    def set_policy(self, instance_uuid, policy):
        return self.request('PUT', '/v1/instances/%s/policy' % instance_uuid,
                            body=policy)['policy']

    def delete_policy(self, instance_uuid):
        self.request('DELETE', '/v1/instances/%s/policy' % instance_uuid)

    # Runs
    def create_run(self, instance_uuid, probes=None, consistency=None):
        body = _query({'probes': probes, 'consistency': consistency})
        return self.request('POST', '/v1/instances/%s/runs' % instance_uuid,
                            body=body)['run']

    def list_runs(self, instance_uuid, limit=None, marker=None):
        return self._list('/v1/instances/%s/runs' % instance_uuid, 'runs',
                          {'marker': marker}, limit)

    def get_run(self, run_id):
        return self.request('GET', '/v1/runs/%s' % parse.quote(run_id, safe=''))['run']

    # Findings
    def list_findings(self, instance_uuid=None, severity=None, since=None, limit=None,
                      marker=None):
        params = {'instance': instance_uuid, 'severity': severity, 'since': since,
                  'marker': marker}
        return self._list('/v1/findings', 'findings', params, limit)

    # Agents
    def list_agents(self):
        return (self.request('GET', '/v1/agents') or {}).get('agents', [])


def _next_marker(body):
    for link in body.get('links') or []:
        if link.get('rel') == 'next' and link.get('href'):
            query = parse.parse_qs(parse.urlsplit(link['href']).query)
            markers = query.get('marker')
            return markers[0] if markers else None
    return None


def _reason(exc):
    """The innermost reason of a connection error (e.g. 'Connection refused')."""
    text = str(exc)
    for marker in ('Connection refused', 'Name or service not known', 'timed out',
                   'No route to host'):
        if marker in text:
            return marker.lower()
    return ' '.join(text.split())[:200]
