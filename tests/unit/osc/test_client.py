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

"""The osc plugin's hooks and its API client (endpoint choice, errors, pagination).

The client's HTTP tests talk to a real HTTP server on 127.0.0.1 (a few canned answers in
the API's documented shapes), through a real keystoneauth1 session.
"""

import argparse
import http.server
import json
import socket
import threading
from urllib import parse

from keystoneauth1 import noauth
from keystoneauth1 import session as ksa_session
import pytest

from nova_vmi import osc
from nova_vmi.osc import client as introspection_client


def test_option_parser_reads_the_endpoint_from_the_environment(monkeypatch):
    monkeypatch.setenv('OS_INTROSPECTION_ENDPOINT', 'http://vmi:8779')
    parsed = osc.build_option_parser(argparse.ArgumentParser()).parse_args([])
    assert parsed.os_introspection_endpoint == 'http://vmi:8779', \
        'expected OS_INTROSPECTION_ENDPOINT as the default'


def test_option_parser_command_line_beats_the_environment(monkeypatch):
    monkeypatch.setenv('OS_INTROSPECTION_ENDPOINT', 'http://vmi:8779')
    parsed = osc.build_option_parser(argparse.ArgumentParser()).parse_args(
        ['--os-introspection-endpoint', 'http://other:1'])
    assert parsed.os_introspection_endpoint == 'http://other:1'


@pytest.mark.parametrize('config, expected', [
    ({'introspection_endpoint': 'http://a', 'auth_type': 'password'}, 'http://a'),
    ({'introspection_endpoint_override': 'http://b'}, 'http://b'),
    ({'auth_type': 'none', 'auth': {'endpoint': 'http://c'}}, 'http://c'),
    ({'auth_type': 'password', 'auth': {'endpoint': 'http://c'}}, None),
    ({'auth_type': 'password'}, None),
])
def test_configured_endpoint_prefers_the_override_then_the_noauth_endpoint(config,
                                                                           expected):
    assert introspection_client.configured_endpoint(config) == expected, config


def test_error_message_is_the_apis_message_on_one_line():
    body = {'error': {'code': 409, 'title': 'Conflict',
                      'message': 'no agent host\nis known'}}
    assert introspection_client.error_message(409, body) == \
        'no agent host is known (HTTP 409)'


def test_error_message_of_a_non_json_body_is_its_bounded_text():
    message = introspection_client.error_message(502, None, '<html>\n' + 'x' * 1000)
    assert message.startswith('<html> x') and message.endswith('(HTTP 502)')
    assert len(message) < 260, 'expected the text cut short: %d chars' % len(message)


class _API(http.server.BaseHTTPRequestHandler):
    """Answers like the API: two pages of runs, a 409, a non-JSON 200."""

    def log_message(self, *args):
        pass

    def _answer(self, status, body, content_type='application/json'):
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header('Content-Type', content_type)
        self.send_header('Content-Length', str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self):
        url = parse.urlsplit(self.path)
        query = parse.parse_qs(url.query)
        self.server.requests.append(self.path)
        if url.path == '/v1/instances/i/runs':
            if 'marker' not in query:
                self._answer(200, {'runs': [{'id': 'r2'}, {'id': 'r1'}], 'links': [
                    {'rel': 'next', 'href': 'http://x/v1/instances/i/runs?marker=r1'}]})
            else:
                self._answer(200, {'runs': [{'id': 'r0'}], 'links': []})
        elif url.path == '/v1/agents':
            self._answer(200, b'not json', 'text/plain')
        else:
            self._answer(404, {'error': {'code': 404, 'title': 'Not Found',
                                         'message': 'run x could not be found'}})

    def do_POST(self):
        self.server.requests.append(self.path)
        self._answer(409, {'error': {'code': 409, 'title': 'Conflict',
                                     'message': 'no agent host is known for instance i'}})


@pytest.fixture
def api_server():
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _API)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _client(url):
    """A client on a session like osc's with ``--os-auth-type none``."""
    session = ksa_session.Session(auth=noauth.NoAuth())
    return introspection_client.Client(session, endpoint=url)


def _url(server):
    return 'http://127.0.0.1:%d' % server.server_address[1]


def test_lists_follow_the_next_link_to_the_last_page(api_server):
    runs = _client(_url(api_server)).list_runs('i')
    assert [run['id'] for run in runs] == ['r2', 'r1', 'r0'], runs
    assert api_server.requests[-1].endswith('marker=r1'), api_server.requests


def test_a_limit_stops_the_list_early(api_server):
    runs = _client(_url(api_server)).list_runs('i', limit=2)
    assert [run['id'] for run in runs] == ['r2', 'r1'], runs
    assert len(api_server.requests) == 1, 'expected no second page: %s' % (
        api_server.requests)


def test_an_api_error_carries_the_apis_message_and_status(api_server):
    with pytest.raises(introspection_client.ClientError) as raised:
        _client(_url(api_server)).create_run('i', probes=['pslist'])
    assert str(raised.value) == 'no agent host is known for instance i (HTTP 409)'
    assert raised.value.status == 409


def test_a_success_that_is_not_json_is_a_clear_error(api_server):
    with pytest.raises(introspection_client.ClientError, match='not JSON'):
        _client(_url(api_server)).list_agents()


def test_connection_refused_names_the_endpoint():
    with socket.socket() as unused:
        unused.bind(('127.0.0.1', 0))
        url = 'http://127.0.0.1:%d' % unused.getsockname()[1]
    with pytest.raises(introspection_client.ClientError) as raised:
        _client(url).list_agents()
    assert str(raised.value) == ('cannot connect to the introspection API at %s: '
                                 'connection refused' % url)


def test_no_endpoint_and_no_catalog_says_how_to_give_one():
    with pytest.raises(introspection_client.ClientError,
                       match='--os-introspection-endpoint'):
        _client(None).list_agents()
