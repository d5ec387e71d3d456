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

"""The ``openstack`` CLI plugin against a running API, through ``openstack`` itself.

``nova-vmi-api`` and ``nova-vmi-listener`` run as processes (noauth, SQLite, RabbitMQ on
127.0.0.1); each command is a real ``python -m openstackclient.shell`` process with
``--os-auth-type none --os-introspection-endpoint``.  No agent runs: the agent's side
(its heartbeat, a run's start and end) is written into the same database through
:mod:`nova_vmi.db.api`, the functions the listener uses, so the API serves real rows.
"""

import http.server
import json
import os
import subprocess
import sys
import threading
import time
from urllib import parse

import pytest
import yaml

from nova_vmi import context as vmi_context
from nova_vmi.db import api as db_api
from nova_vmi.objects import notification
from tests.unit.db import api_cases
from tests.unit.objects import samples
from tools.testbed.agent import RABBIT_URL
from tools.testbed.controlplane import ControlPlane

HEARTBEAT = notification.VMIHeartbeatPayload.from_primitive(
    samples.load(notification.HEARTBEAT)['payload'])
# The sample heartbeat's host and guests: guests the API knows where they run.
HOST = HEARTBEAT.host
SERVER = HEARTBEAT.guests[0].uuid
OTHER_SERVER = HEARTBEAT.guests[1].uuid
UNKNOWN_SERVER = '0badc0de-0000-4000-8000-000000000000'
HOSTLESS_SERVER = '0badc0de-0000-4000-8000-000000000001'


@pytest.fixture(scope='module')
def api(tmp_path_factory):
    path = tmp_path_factory.mktemp('osc') / 'nova-vmi.sqlite'
    url = 'sqlite:///%s' % path
    with ControlPlane(url, RABBIT_URL) as control_plane:
        db_api.configure(api_cases.make_conf(url))
        ctx = vmi_context.get_admin_context()
        db_api.agent_heartbeat(ctx, HEARTBEAT)
        yield control_plane, ctx
    db_api.dispose()


def openstack(api, *args, endpoint=None, timeout=120):
    """``openstack --os-auth-type none ... <args>`` as a process: CompletedProcess."""
    control_plane, _ = api
    env = {key: value for key, value in os.environ.items()
           if not key.startswith('OS_')}
    command = [sys.executable, '-m', 'openstackclient.shell', '--os-auth-type', 'none',
               '--os-introspection-endpoint', endpoint or control_plane.url] + list(args)
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          env=env)


def ok(result):
    assert result.returncode == 0, 'expected exit 0, got %d: %s' % (
        result.returncode, result.stderr)
    return result.stdout


def one_line_error(result):
    """The error of a failed command, checked to be one line with a non-zero exit."""
    assert result.returncode != 0, 'expected a failure, got exit 0: %s' % result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, 'expected a one-line error, got: %r' % result.stderr
    return lines[0]


def as_json(result):
    return json.loads(ok(result))


def end_run(ctx, run_id, instance_uuid, findings=()):
    """The agent's side of a run: run.start, then run.end with ``findings``."""
    db_api.run_started(ctx, api_cases.payload(notification.RUN_START, run_id=run_id,
                                              instance_uuid=instance_uuid))
    changes = {'run_id': run_id, 'instance_uuid': instance_uuid}
    if findings:
        changes['findings'] = [api_cases.finding(run_id, instance_uuid, summary)
                               for summary in findings]
    db_api.run_ended(ctx, api_cases.payload(notification.RUN_END, **changes))


def test_agent_list_shows_the_agent_that_sent_a_heartbeat_in_every_format(api):
    agents = as_json(openstack(api, 'introspection', 'agent', 'list', '-f', 'json'))
    assert [(a['host'], a['driver'], a['alive']) for a in agents] == \
        [(HOST, 'qemu', True)], 'expected the heartbeat\'s agent, alive: %s' % agents
    assert agents[0]['capabilities'] == list(HEARTBEAT.capabilities), agents
    as_yaml = yaml.safe_load(ok(openstack(api, 'introspection', 'agent', 'list',
                                          '-f', 'yaml')))
    assert as_yaml == agents, 'expected yaml and json to hold the same agents'
    value = ok(openstack(api, 'introspection', 'agent', 'list', '-f', 'value',
                         '-c', 'host'))
    assert value.split() == [HOST], 'expected only the host with -f value -c host'
    table = ok(openstack(api, 'introspection', 'agent', 'list'))
    assert HOST in table and '| host' in table, 'expected a table: %s' % table


def test_policy_set_show_unset_round_trip(api):
    created = as_json(openstack(
        api, 'server', 'introspection', 'policy', 'set', SERVER, '--probe', 'pslist',
        '--probe', 'hidden_tasks', '--periodic', '300', '--guest-trigger',
        '--consistency', 'pause', '--guest-trigger-rate', '2.5', '-f', 'json'))
    assert created['probes'] == ['pslist', 'hidden_tasks'], created
    assert (created['periodic_seconds'], created['guest_trigger'], created['on_demand'],
            created['consistency'], created['guest_trigger_rate']) == \
        (300, True, True, 'pause', 2.5), 'expected the options given: %s' % created

    changed = as_json(openstack(api, 'server', 'introspection', 'policy', 'set', SERVER,
                                '--no-guest-trigger', '--no-periodic', '-f', 'json'))
    assert changed['probes'] == ['pslist', 'hidden_tasks'], \
        'expected set to keep the probes it was not given: %s' % changed
    assert (changed['guest_trigger'], changed['periodic_seconds'],
            changed['consistency']) == (False, None, 'pause'), changed

    shown = yaml.safe_load(ok(openstack(api, 'server', 'introspection', 'policy', 'show',
                                        SERVER, '-f', 'yaml')))
    assert shown['probes'] == changed['probes'] and shown['guest_trigger'] is False, shown

    assert ok(openstack(api, 'server', 'introspection', 'policy', 'unset', SERVER)) == ''
    error = one_line_error(openstack(api, 'server', 'introspection', 'policy', 'show',
                                     SERVER))
    assert 'has no introspection policy' in error and '404' in error, error


def test_policy_set_on_a_server_without_policy_needs_a_probe(api):
    error = one_line_error(openstack(api, 'server', 'introspection', 'policy', 'set',
                                     OTHER_SERVER, '--periodic', '60'))
    assert '--probe' in error, 'expected to be told to give --probe: %s' % error


def test_policy_set_with_an_unknown_probe_shows_the_api_message(api):
    error = one_line_error(openstack(api, 'server', 'introspection', 'policy', 'set',
                                     OTHER_SERVER, '--probe', 'rootkit'))
    assert "'rootkit' is not one of" in error and '400' in error, error


def test_run_wait_shows_progress_and_ends_with_the_results(api):
    control_plane, ctx = api
    command = [sys.executable, '-m', 'openstackclient.shell', '--os-auth-type', 'none',
               '--os-introspection-endpoint', control_plane.url, 'server',
               'introspection', 'run', SERVER, '--probe', 'pslist', '--probe',
               'hidden_tasks', '--wait', '--poll-interval', '0.2', '--timeout', '120',
               '-f', 'json']
    env = {key: value for key, value in os.environ.items() if not key.startswith('OS_')}
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env=env) as waiting:
        run_id = _requested_run(ctx, SERVER, waiting)
        end_run(ctx, run_id, SERVER, findings=['pid 4242 hidden'])
        stdout, stderr = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, 'expected --wait to succeed: %s' % stderr
    run = json.loads(stdout)
    assert (run['id'], run['status']) == (run_id, 'done'), run
    assert [r['probe'] for r in run['results']] == \
        [r.probe for r in api_cases.payload(notification.RUN_END).results], run
    assert run['findings'][0]['summary'] == 'pid 4242 hidden', run['findings']
    assert 'run %s: pending' % run_id in stderr and 'run %s: done' % run_id in stderr, \
        'expected the progress on stderr: %r' % stderr


def _requested_run(ctx, instance_uuid, process, timeout=60):
    """The id of the pending run ``process`` asked for (as the agent would see it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pending = [r for r in db_api.run_list(ctx, instance_uuid=instance_uuid)
                   if r['status'] == 'pending']
        if pending:
            return pending[0]['id']
        if process.poll() is not None:
            raise AssertionError('openstack ended before a run was stored: %s'
                                 % process.stderr.read())
        time.sleep(0.1)
    raise AssertionError('no run was requested within %ds' % timeout)


def test_run_without_wait_shows_the_pending_run(api):
    run = as_json(openstack(api, 'server', 'introspection', 'run', OTHER_SERVER,
                            '--probe', 'modules', '-f', 'json'))
    assert (run['status'], run['probes'], run['host'], run['instance_uuid']) == \
        ('pending', ['modules'], HOST, OTHER_SERVER), run


def test_list_and_show_runs(api):
    _, ctx = api
    earlier, run = [as_json(openstack(api, 'server', 'introspection', 'run', OTHER_SERVER,
                                      '-f', 'json')) for _ in range(2)]
    end_run(ctx, run['id'], OTHER_SERVER)
    runs = as_json(openstack(api, 'server', 'introspection', 'list', OTHER_SERVER,
                             '-f', 'json'))
    ids = [listed['id'] for listed in runs]
    assert ids[:2] == [run['id'], earlier['id']], 'expected the newest run first: %s' % ids
    first = as_json(openstack(api, 'server', 'introspection', 'list', OTHER_SERVER,
                              '--limit', '1', '-f', 'json'))
    assert len(first) == 1, 'expected one run with --limit 1: %s' % first

    shown = yaml.safe_load(ok(openstack(api, 'server', 'introspection', 'show',
                                        run['id'], '-f', 'yaml')))
    assert shown['status'] == 'done' and shown['results'], shown
    table = ok(openstack(api, 'server', 'introspection', 'show', run['id']))
    first_probe = shown['results'][0]
    assert '%s: %d record' % (first_probe['probe'], len(first_probe['records'])) \
        in table, 'expected a heading per probe in the table: %s' % table
    value = ok(openstack(api, 'server', 'introspection', 'show', run['id'], '-f',
                         'value', '-c', 'status'))
    assert value.strip() == 'done', value


def test_finding_list_filters_by_server_severity_and_time(api):
    _, ctx = api
    run = as_json(openstack(api, 'server', 'introspection', 'run', OTHER_SERVER,
                            '-f', 'json'))
    end_run(ctx, run['id'], OTHER_SERVER, findings=['module rk hidden'])
    findings = as_json(openstack(api, 'server', 'introspection', 'finding', 'list',
                                 '--server', OTHER_SERVER, '--severity', 'high',
                                 '--severity', 'critical', '-f', 'json'))
    assert findings and findings[0]['summary'] == 'module rk hidden', findings
    assert {f['instance_uuid'] for f in findings} == {OTHER_SERVER}, findings
    low = as_json(openstack(api, 'server', 'introspection', 'finding', 'list',
                            '--severity', 'low', '-f', 'json'))
    assert low == [], 'expected no low-severity findings: %s' % low
    later = as_json(openstack(api, 'server', 'introspection', 'finding', 'list',
                              '--since', '2999-01-01T00:00:00Z', '-f', 'json'))
    assert later == [], 'expected no findings from the future: %s' % later


def test_a_run_on_an_unknown_server_is_one_line_404(api):
    error = one_line_error(openstack(api, 'server', 'introspection', 'run',
                                     UNKNOWN_SERVER))
    assert 'could not be found (HTTP 404)' in error, error


def test_a_run_on_a_server_without_a_known_host_is_one_line_409(api):
    _, ctx = api
    db_api.instance_update(ctx, HOSTLESS_SERVER, name='nowhere')
    error = one_line_error(openstack(api, 'server', 'introspection', 'run',
                                     HOSTLESS_SERVER))
    assert 'no agent host is known' in error and '(HTTP 409)' in error, error


def test_an_unknown_run_is_one_line_404(api):
    error = one_line_error(openstack(api, 'server', 'introspection', 'show',
                                     UNKNOWN_SERVER))
    assert '404' in error, error


def test_a_server_name_without_nova_is_one_line(api):
    error = one_line_error(openstack(api, 'server', 'introspection', 'list', 'web-1'))
    assert "'web-1'" in error and 'UUID' in error, error


class _NovaStandIn(http.server.BaseHTTPRequestHandler):
    """Stands in for Nova's compute API (no Nova runs here): the version document and
    the two lookups openstacksdk's find_server makes, for one server named web-1.
    """

    def log_message(self, *args):
        pass

    def _answer(self, status, body):
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self):
        url = parse.urlsplit(self.path)
        path = url.path.rstrip('/')
        version = {'id': 'v2.1', 'status': 'CURRENT', 'version': '2.96',
                   'min_version': '2.1', 'updated': '2013-07-23T11:33:21Z',
                   'links': [{'rel': 'self', 'href': 'http://127.0.0.1:%d/v2.1/'
                              % self.server.server_address[1]}]}
        names = parse.parse_qs(url.query).get('name')
        if path == '/v2.1':
            self._answer(200, {'version': version})
        elif path == '/v2.1/servers/detail' and names == ['web-1']:
            self._answer(200, {'servers': [{'id': SERVER, 'name': 'web-1',
                                            'links': []}]})
        elif path == '/v2.1/servers/detail':
            self._answer(200, {'servers': []})
        else:
            self._answer(404, {'itemNotFound': {'code': 404, 'message': 'not found'}})


@pytest.fixture
def nova_cloud(api, tmp_path):
    """A clouds.yaml cloud without Keystone whose Nova is the stand-in above."""
    nova = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _NovaStandIn)
    thread = threading.Thread(target=nova.serve_forever, daemon=True)
    thread.start()
    clouds = tmp_path / 'clouds.yaml'
    clouds.write_text(yaml.safe_dump({'clouds': {'vmi': {
        'auth_type': 'none',
        'compute_endpoint_override': 'http://127.0.0.1:%d/v2.1' % nova.server_address[1],
        'introspection_endpoint_override': api[0].url}}}))
    yield str(clouds)
    nova.shutdown()
    nova.server_close()


def test_a_server_name_is_resolved_through_nova(api, nova_cloud):
    ok(openstack(api, 'server', 'introspection', 'policy', 'set', SERVER, '--probe',
                 'creds'))
    env = dict(os.environ, OS_CLIENT_CONFIG_FILE=nova_cloud)
    command = [sys.executable, '-m', 'openstackclient.shell', '--os-cloud', 'vmi',
               'server', 'introspection', 'policy', 'show', 'web-1', '-f', 'json']
    result = subprocess.run(command, capture_output=True, text=True, timeout=120,
                            env=env)
    shown = as_json(result)
    assert (shown['instance_uuid'], shown['probes']) == (SERVER, ['creds']), shown
    command[-3] = 'db-9'
    error = one_line_error(subprocess.run(command, capture_output=True, text=True,
                                          timeout=120, env=env))
    assert "'db-9' is not a UUID and Nova could not resolve it" in error, error


def test_an_unreachable_api_names_the_endpoint(api):
    endpoint = 'http://127.0.0.1:9'
    error = one_line_error(openstack(api, 'introspection', 'agent', 'list',
                                     endpoint=endpoint))
    assert endpoint in error and 'connection refused' in error, error
