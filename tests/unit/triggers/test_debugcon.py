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

"""Tests for the debugcon trigger source, over real unix sockets.

QEMU's ``-chardev socket,server=on,wait=off`` cannot run here, so :class:`FakeChardev`
stands in for it: a real listening unix stream socket that accepts the agent as its
client and writes the bytes a guest would send to port 0x402.  Everything on the agent's
side (the selector thread, connects, reads, reconnects) is the real code.
"""

import os
import re
import shutil
import socket
import tempfile
import threading

import pytest

from vmi_agent.drivers.base import GuestInfo
from vmi_agent.triggers import debugcon

WAIT = 5.0
MIB = 1 << 20


class FakeChardev:
    """QEMU's debugcon chardev in server mode: a real unix socket listening at ``path``."""

    def __init__(self, path):
        self.path = path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(1)
        self.listener.settimeout(WAIT)
        self.conn = None
        self.closed = False

    def accept(self):
        self.conn, _ = self.listener.accept()
        self.conn.settimeout(WAIT)
        return self.conn

    def guest_writes(self, data):
        self.conn.sendall(data)

    def peer_closed(self):
        """True when the agent closed its end (we read EOF)."""
        try:
            return self.conn.recv(1) == b''
        except (ConnectionResetError, socket.timeout):
            return False

    def close(self):
        """QEMU going away: close the client and the listener, remove the socket file."""
        if self.closed:
            return
        self.closed = True
        if self.conn is not None:
            self.conn.close()
        self.listener.close()
        if os.path.exists(self.path):
            os.unlink(self.path)


class Recorder:
    """The agent's ``fire``: records every call, can be told to raise."""

    def __init__(self):
        self.calls = []
        self.cond = threading.Condition()
        self.raise_on = set()

    def __call__(self, uuid, trigger, detail):
        with self.cond:
            self.calls.append((uuid, trigger, detail))
            self.cond.notify_all()
            if len(self.calls) in self.raise_on:
                raise RuntimeError('agent failed on call %d' % len(self.calls))

    def wait_for(self, predicate):
        with self.cond:
            return self.cond.wait_for(lambda: predicate(self.calls), timeout=WAIT)

    def of(self, uuid):
        with self.cond:
            return [c for c in self.calls if c[0] == uuid]


def _bytes_reported(detail):
    match = re.fullmatch(r'debugcon (?:byte 0x[0-9a-f]{2}|(\d+) bytes, first 0x[0-9a-f]{2})',
                         detail)
    assert match, 'unexpected detail %r' % detail
    return int(match.group(1) or 1)


@pytest.fixture
def sockdir():
    # AF_UNIX paths are limited to 107 bytes: pytest's tmp_path can be longer.
    path = tempfile.mkdtemp(prefix='vmi-dbg-', dir='/tmp')
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def chardevs(sockdir):
    made = []

    def make(name):
        dev = FakeChardev(os.path.join(sockdir, name + '.sock'))
        made.append(dev)
        return dev

    yield make
    for dev in made:
        dev.close()


@pytest.fixture
def fired():
    return Recorder()


@pytest.fixture
def source(fired):
    src = debugcon.DebugconSource(fired, retry_initial=0.01, retry_max=0.05)
    src.start()
    yield src
    src.stop()


def _guest(uuid, path):
    return GuestInfo(uuid=uuid, triggers=(('vmfunc', '7'), ('debugcon', path)))


def test_one_byte_fires_once_for_that_guest(source, fired, chardevs):
    dev = chardevs('a')
    source.watch(_guest('uuid-a', dev.path))
    dev.accept()
    dev.guest_writes(b'T')
    assert fired.wait_for(lambda calls: calls), 'a byte from the guest should fire'
    dev.guest_writes(b'\x00')
    assert fired.wait_for(lambda calls: len(calls) >= 2), 'a second byte should fire again'
    assert fired.calls == [('uuid-a', 'guest', 'debugcon byte 0x54'),
                           ('uuid-a', 'guest', 'debugcon byte 0x00')], \
        'each byte should fire exactly once, for its guest, as a guest trigger'


def test_a_guest_without_debugcon_is_not_watched(fired):
    src = debugcon.DebugconSource(fired)
    src.watch(GuestInfo(uuid='xen-guest', triggers=(('vmfunc', '7'),)))
    assert src.wanted() == {}, 'a guest with no debugcon address should be ignored'
    src.watch(_guest('u', '/run/u.sock'))
    src.watch(GuestInfo(uuid='u'))
    assert src.wanted() == {}, 'a guest that lost its debugcon address should be dropped'


def test_watch_before_qemu_listens_connects_when_it_does(source, fired, chardevs, sockdir):
    path = os.path.join(sockdir, 'late.sock')
    source.watch(_guest('uuid-late', path))
    assert not os.path.exists(path)
    dev = FakeChardev(path)
    try:
        dev.accept()
        dev.guest_writes(b'x')
        assert fired.wait_for(lambda calls: calls == [('uuid-late', 'guest',
                                                       'debugcon byte 0x78')]), \
            'the source should connect once the socket appears, and fire'
    finally:
        dev.close()


def test_a_restarted_qemu_is_reconnected(source, fired, chardevs, sockdir):
    dev = chardevs('a')
    source.watch(_guest('uuid-a', dev.path))
    dev.accept()
    dev.close()                       # QEMU dies: EOF on the agent's side, file gone
    again = chardevs('a')             # QEMU back at the same path
    again.accept()
    again.guest_writes(b'!')
    assert fired.wait_for(lambda calls: calls == [('uuid-a', 'guest', 'debugcon byte 0x21')]), \
        'the source should reconnect to the new QEMU and fire for its bytes'


def test_a_dropped_client_reconnects_to_the_same_listener(source, fired, chardevs):
    dev = chardevs('a')
    source.watch(_guest('uuid-a', dev.path))
    dev.accept().close()              # QEMU closes the client but keeps listening
    dev.accept()
    dev.guest_writes(b'T')
    assert fired.wait_for(lambda calls: calls), 'the source should connect again and fire'


def test_unwatch_closes_the_connection(source, chardevs):
    dev = chardevs('a')
    source.watch(_guest('uuid-a', dev.path))
    dev.accept()
    source.unwatch('uuid-a')
    source.unwatch('never-watched')
    assert dev.peer_closed(), 'unwatch should close the socket (QEMU sees EOF)'
    assert source.wanted() == {}, 'nothing should be watched any more'


def test_watch_with_a_new_address_moves_to_it(source, fired, chardevs):
    old, new = chardevs('old'), chardevs('new')
    source.watch(_guest('uuid-a', old.path))
    old.accept()
    source.watch(_guest('uuid-a', new.path))
    assert old.peer_closed(), 'the old socket should be closed'
    new.accept()
    new.guest_writes(b'T')
    assert fired.wait_for(lambda calls: calls), 'the new socket should fire'


def test_a_flood_costs_one_fire_per_read_and_other_guests_are_still_served(
        source, fired, chardevs):
    noisy, quiet = chardevs('noisy'), chardevs('quiet')
    source.watch(_guest('noisy', noisy.path))
    source.watch(_guest('quiet', quiet.path))
    noisy.accept()
    quiet.accept()
    noisy.guest_writes(b'\xff' * MIB)
    assert fired.wait_for(lambda calls: sum(
        _bytes_reported(d) for u, _, d in calls if u == 'noisy') == MIB), \
        'every flooded byte should be reported, in some fire'
    flood = fired.of('noisy')
    assert len(flood) < MIB // 64, \
        '1 MiB should cost about one fire per %d bytes, not %d fires' % (
            debugcon.MAX_READ, len(flood))
    assert max(_bytes_reported(d) for _, _, d in flood) <= debugcon.MAX_READ, \
        'no fire should report more than one read of %d bytes' % debugcon.MAX_READ
    quiet.guest_writes(b'q')
    assert fired.wait_for(lambda calls: ('quiet', 'guest', 'debugcon byte 0x71') in calls), \
        'the quiet guest should still be served after the flood'


def test_watch_and_unwatch_from_many_threads_at_once(source, fired, chardevs):
    dev = chardevs('a')

    def churn(n):
        for i in range(50):
            source.watch(_guest('churn-%d' % n, dev.path + '.absent'))
            source.unwatch('churn-%d' % n)

    threads = [threading.Thread(target=churn, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert source.wanted() == {}, 'every guest watched and unwatched should be gone'
    source.watch(_guest('uuid-a', dev.path))
    dev.accept()
    dev.guest_writes(b'T')
    assert fired.wait_for(lambda calls: calls == [('uuid-a', 'guest', 'debugcon byte 0x54')]), \
        'the loop should still serve a guest after the churn'


def test_a_failing_fire_does_not_stop_the_loop(source, fired, chardevs):
    fired.raise_on = {1}
    dev = chardevs('a')
    source.watch(_guest('uuid-a', dev.path))
    dev.accept()
    dev.guest_writes(b'1')
    assert fired.wait_for(lambda calls: len(calls) == 1), 'the first byte should fire'
    dev.guest_writes(b'2')
    assert fired.wait_for(lambda calls: len(calls) == 2), \
        'a byte after fire() raised should still fire'


def test_stop_closes_every_socket_and_joins_the_thread(fired, chardevs):
    a, b = chardevs('a'), chardevs('b')
    src = debugcon.DebugconSource(fired, retry_initial=0.01, retry_max=0.05)
    src.stop()                        # never started: nothing to do
    src.watch(_guest('uuid-a', a.path))   # before start: connects once started
    src.start()
    src.watch(_guest('uuid-b', b.path))
    a.accept()
    b.accept()
    src.stop()
    src.stop()
    assert 'vmi-debugcon' not in [t.name for t in threading.enumerate()], \
        'stop() should have joined the trigger thread'
    assert a.peer_closed() and b.peer_closed(), 'stop() should close every socket'


def test_a_stopped_source_can_start_again(fired, chardevs):
    dev = chardevs('a')
    src = debugcon.DebugconSource(fired, retry_initial=0.01, retry_max=0.05)
    src.watch(_guest('uuid-a', dev.path))
    src.start()
    dev.accept()
    src.stop()
    try:
        src.start()
        dev.accept()
        dev.guest_writes(b'T')
        assert fired.wait_for(lambda calls: calls), \
            'a restarted source should reconnect the guests still watched'
    finally:
        src.stop()
