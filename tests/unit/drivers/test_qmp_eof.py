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

"""QMPClient.closed_by_peer tells that QEMU went away without a command round trip.

QEMU's QMP monitor is the boundary that cannot run here: :mod:`fakeqmp`, a QMP server on
a real unix socket, stands in for it.
"""

import time

import pytest

from tests.unit.drivers.fakeqmp import FakeQMPServer
from vmi_agent.drivers.qmp import QMPClient


@pytest.fixture
def server(tmp_path):
    server = FakeQMPServer(tmp_path / 'qmp.sock')
    yield server
    server.stop()


def _wait_for(predicate, what):
    for _ in range(5000):           # generous: ~5 s of polling
        if predicate():
            return
        time.sleep(0.001)
    raise AssertionError('timed out waiting for %s' % what)


def test_open_connection_is_not_closed(server):
    with QMPClient(server.path, timeout=5) as client:
        assert not client.closed_by_peer(), 'expected a live connection reported open'
        assert server.commands == ['qmp_capabilities'], 'expected no command sent'


def test_connection_closed_by_qemu_is_seen(server):
    with QMPClient(server.path, timeout=5) as client:
        server.drop_client()
        _wait_for(client.closed_by_peer, 'closed_by_peer() to see the end of the stream')


def test_events_read_meanwhile_are_kept_and_commands_still_work(server):
    with QMPClient(server.path, timeout=5) as client:
        server.send_event('RTC_CHANGE')
        server.send_event('BALLOON_CHANGE')
        got = []

        def drained_both():
            assert not client.closed_by_peer(), 'expected events not to count as closed'
            got.extend(e['event'] for e in client.events())
            return len(got) == 2
        _wait_for(drained_both, 'both events')
        assert got == ['RTC_CHANGE', 'BALLOON_CHANGE']
        assert client.execute('query-status')['running'] is True, \
            'expected the client usable after closed_by_peer read the socket'


def test_partial_line_stays_for_the_next_reply(server):
    with QMPClient(server.path, timeout=5) as client:
        client._buffer = b'{"event": "STO'
        assert not client.closed_by_peer()
        assert client._buffer == b'{"event": "STO', 'expected the partial line kept'


def test_closed_client_counts_as_closed(server):
    client = QMPClient(server.path, timeout=5)
    client.close()
    assert client.closed_by_peer()
