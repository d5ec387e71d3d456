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

"""The aggregate sync's plan, and ``nova-vmi-manage aggregate sync``'s one-line errors.

The sync against a real Compute API is in tests/nova/test_aggregate_sync.py (``tox -e
nova``); here the Compute API is the boundary replaced, by :class:`FakeAdapter`.
"""

import datetime

import pytest

from nova_vmi.cmd import manage
from nova_vmi.compute import aggregates

NOW = datetime.datetime(2026, 11, 27, 8, 0, tzinfo=datetime.timezone.utc)


def agent(host, capabilities, age=5, interval=10):
    return {'host': host, 'capabilities': capabilities, 'interval': interval,
            'last_heartbeat': NOW - datetime.timedelta(seconds=age)}


@pytest.mark.parametrize('capabilities, kinds', [
    (['live', 'pause', 'trigger:debugcon'], ('debugcon',)),
    (['trigger:vmfunc', 'trigger:rdtsc', 'trigger:vmfunc'], ('rdtsc', 'vmfunc')),
    (['trigger:', 'trigger:guest', 'trigger:a,b', 'trigger:' + 'x' * 33, 7], ()),
    (None, ()),
])
def test_trigger_kinds_keeps_only_well_formed_kinds(capabilities, kinds):
    assert aggregates.trigger_kinds(capabilities) == kinds


def test_live_agents_are_grouped_by_their_kinds_and_silent_ones_left_out():
    wanted = aggregates.desired_aggregates([
        agent('q1', ['trigger:debugcon']), agent('q2', ['live', 'trigger:debugcon']),
        agent('x1', ['trigger:vmfunc', 'trigger:rdtsc']), agent('p1', ['live']),
        agent('dead', ['trigger:debugcon'], age=31)], 'vmi', intervals=3, now=NOW)
    assert {name: sorted(g['hosts']) for name, g in wanted.items()} == {
        'vmi-debugcon': ['q1', 'q2'], 'vmi-rdtsc-vmfunc': ['x1'], 'vmi': ['p1']}
    assert wanted['vmi-rdtsc-vmfunc']['metadata'] == {
        'vmi_enabled': 'true', 'vmi_triggers': 'rdtsc,vmfunc,guest', 'vmi_managed_by': 'vmi'}
    assert wanted['vmi']['metadata']['vmi_triggers'] is None, 'None unsets the key'


def test_plan_creates_adds_removes_and_empties_what_it_no_longer_wants():
    wanted = {'vmi-debugcon': {'hosts': {'q1', 'q2'}, 'metadata': aggregates.aggregate_metadata(
        'vmi', ('debugcon',))}}
    existing = [
        {'id': 1, 'name': 'vmi-debugcon', 'hosts': ['q1', 'old'],
         'metadata': {'vmi_enabled': 'true', 'vmi_triggers': 'debugcon,guest',
                      'vmi_managed_by': 'vmi'}},
        {'id': 2, 'name': 'vmi-vmfunc', 'hosts': ['x1'], 'metadata': {'vmi_managed_by': 'vmi'}},
        {'id': 3, 'name': 'someone-elses', 'hosts': ['x2'], 'metadata': {}},
    ]
    assert aggregates.plan(wanted, existing, 'vmi') == [
        ('add_host', 'vmi-debugcon', 'q2'), ('remove_host', 'vmi-debugcon', 'old'),
        ('remove_host', 'vmi-vmfunc', 'x1')]


class FakeResponse:
    def __init__(self, status, body):
        self.status_code = status
        self.body = body
        self.text = str(body)

    def json(self):
        return self.body


class FakeAdapter:
    """Stands for the Compute API: knows hosts q1 and p1, records requests."""

    KNOWN = {'q1', 'p1'}

    def __init__(self):
        self.requests = []
        self.aggregates = {}

    def request(self, url, method, json=None, raise_exc=True):
        self.requests.append((method, url, json))
        if method == 'GET':
            return FakeResponse(200, {'aggregates': list(self.aggregates.values())})
        if url == '/os-aggregates':
            agg = {'id': len(self.aggregates) + 1, 'name': json['aggregate']['name'],
                   'hosts': [], 'metadata': {}}
            self.aggregates[agg['id']] = agg
            return FakeResponse(200, {'aggregate': agg})
        agg = self.aggregates[int(url.split('/')[2])]
        host = (json.get('add_host') or {}).get('host')
        if host is not None and host not in self.KNOWN:
            return FakeResponse(404, {'itemNotFound': {'message': 'Compute host %s could '
                                                                  'not be found.' % host}})
        return FakeResponse(200, {'aggregate': agg})


class Conf:
    """The two options sync() reads."""

    class api:
        agent_down_intervals = 3


def test_sync_reports_the_refused_hosts_in_one_line_after_doing_the_rest(monkeypatch):
    monkeypatch.setattr(aggregates.db_api, 'configure', lambda conf: None)
    monkeypatch.setattr(aggregates.db_api, 'agent_list', lambda ctx: [
        agent('q1', ['trigger:debugcon'], age=0), agent('ghost', ['trigger:debugcon'], age=0),
        agent('p1', [], age=0)])
    monkeypatch.setattr(aggregates.heartbeats, 'is_alive', lambda a, now, n: True)
    adapter = FakeAdapter()
    with pytest.raises(aggregates.SyncIncomplete) as info:
        aggregates.sync(Conf, 'vmi', adapter=adapter)
    message = str(info.value)
    assert '\n' not in message, 'expected one line'
    assert message.startswith('1 of 7 change(s) refused: add host ghost to vmi-debugcon: '
                              'Nova refused POST /os-aggregates/'), message
    assert 'Compute host ghost could not be found.' in message
    added = [(url, body['add_host']['host']) for method, url, body in adapter.requests
             if body and 'add_host' in body]
    assert ('/os-aggregates/2/action', 'q1') in added, 'expected q1 added anyway'


def test_manage_aggregate_sync_without_nova_credentials_is_one_line(tmp_path, capsys):
    config = tmp_path / 'nova-vmi.conf'
    config.write_text('[database]\nconnection = sqlite:///%s\n' % (tmp_path / 'x.sqlite'))
    status = manage.main(['--config-file', str(config), 'aggregate', 'sync'])
    out, err = capsys.readouterr()
    assert (status, out) == (1, '')
    assert err == ('nova-vmi-manage: error: [nova] auth_type is not set: the sync needs '
                   'service credentials that may change host aggregates (an admin)\n')
