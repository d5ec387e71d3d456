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

"""Tests of the xentrace trigger source.

The boundary replaced: Xen's trace buffers, which exist only under a running hypervisor.
A fake ``xentrace`` (a small Python script written to ``tmp_path``) stands in for the
real binary: it records its argv and pid, writes a byte stream built with the parser's
own ``encode_*`` helpers (records from watched and unwatched domains, lost records,
garbage, a truncated window) to stdout, which is the pipe the source reads, and then
either exits or waits to be terminated.  Everything else is the real source: the child
process, the pipe, the reader thread, the parser and the restarts.
"""

import os
import sys
import threading
import time

from oslo_config import cfg
from hypothesis import given, settings, strategies as hst
import pytest

from vmi_agent.conf import xen as xen_conf
from vmi_agent.drivers.base import GuestInfo
from vmi_agent.triggers import xentrace as xt
from vmi_agent.triggers import xentrace_source as xs

UUID3 = '33333333-0000-4000-8000-000000000003'
UUID5 = '55555555-0000-4000-8000-000000000005'
RIP = 0xffffffff81000123
WAIT = 10.0

FAKE_XENTRACE = '''#!{python}
import os, signal, sys, time
here = os.path.dirname(os.path.abspath(__file__))
count = len([n for n in os.listdir(here) if n.startswith('argv.')]) + 1
with open(os.path.join(here, 'argv.%d' % count), 'w') as f:
    f.write('\\n'.join(sys.argv[1:]))
with open(os.path.join(here, 'pid.%d' % count), 'w') as f:
    f.write(str(os.getpid()))
name = os.path.join(here, 'stream.%d' % count)
if not os.path.exists(name):
    name = os.path.join(here, 'stream')
with open(name, 'rb') as f:
    data = f.read()
for i in range(0, len(data), 7):       # arbitrary chunks, as a pipe may deliver them
    sys.stdout.buffer.write(data[i:i + 7])
    sys.stdout.buffer.flush()
if os.path.exists(os.path.join(here, 'exit')):
    sys.exit(1)
while True:
    time.sleep(1)
'''


def _trigger(domid, leaf=0x3f, vcpu=1, args=(1, 2, 3)):
    return xt.encode_record(xt.TRC_HVM_VMI_TRIGGER,
                            xt.encode_trigger(domid, vcpu, leaf, RIP, args), tsc=1000)


def _lost(count, domid):
    return xt.encode_record(xt.TRC_LOST_RECORDS, (count, domid, 0, 0), tsc=999)


def _stream():
    return b''.join([
        xt.encode_window(0, [xt.encode_record(0x00082001, (1, 2)), _trigger(3)]),
        b'\xde\xad\xbe\xef garbage between windows',
        xt.encode_window(1, [_trigger(4), _lost(5, 3),
                             xt.encode_record(xt.TRC_HVM_VMI_TRIGGER, (1, 2), tsc=5)]),
        xt.encode_window(2, [_trigger(3, leaf=0xffffffff, vcpu=0, args=(7, 8, 9))]),
        xt.encode_window(3, [_trigger(3)])[:-6],        # cut short by a dying writer
    ])


class Fired:
    """Collects fire() calls and lets a test wait for them."""

    def __init__(self):
        self.calls = []
        self.cond = threading.Condition()

    def __call__(self, uuid, trigger, detail):
        with self.cond:
            self.calls.append((uuid, trigger, detail))
            self.cond.notify_all()

    def wait_for(self, n):
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.calls) >= n, WAIT), \
                'expected %d fire() calls, got %r' % (n, self.calls)


def _wait(predicate, what):
    deadline = time.monotonic() + WAIT
    while not predicate():
        assert time.monotonic() < deadline, 'timed out waiting for %s' % what
        time.sleep(0.01)


@pytest.fixture
def fake(tmp_path):
    script = tmp_path / 'xentrace'
    script.write_text(FAKE_XENTRACE.format(python=sys.executable))
    script.chmod(0o755)
    (tmp_path / 'stream').write_bytes(_stream())
    return tmp_path


def _source(fake, fire, **overrides):
    conf = cfg.ConfigOpts()
    xen_conf.register_opts(conf)
    conf([])
    conf.set_override('xentrace_path', str(fake / 'xentrace'), group='xen')
    for key, value in overrides.items():
        conf.set_override(key, value, group='xen')
    source = xs.XentraceSource(fire, conf)
    source.restart_delay_min = 0.05
    source.watch(GuestInfo(uuid=UUID3, triggers=(('vmfunc', '3'),)))
    return source


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open('/proc/%d/stat' % pid) as f:
        return f.read().split()[2] != 'Z'


def test_fires_for_watched_domains_and_survives_a_damaged_stream(fake, caplog):
    fired = Fired()
    source = _source(fake, fired)
    source.start()
    try:
        fired.wait_for(2)
        _wait(lambda: source.stats.unknown_domain == 1, 'the unwatched trigger')
    finally:
        source.stop()
    assert fired.calls == [
        (UUID3, 'guest', 'vmfunc leaf 0x3f vcpu 1 rip 0x%x args 0x1 0x2 0x3' % RIP),
        (UUID3, 'guest', 'rdtsc vcpu 0 rip 0x%x args 0x7 0x8 0x9' % RIP),
    ], 'the two whole triggers of domain 3 fire; domain 4 and the cut record do not'
    assert source.stats.lost_records == 5 and source.stats.bad_records == 1, \
        'the lost records are counted and the short trigger record is rejected'
    assert 'dropped 5 trace records' in caplog.text, 'a loss is a warning'


def test_runs_xentrace_with_the_hvm_handler_mask_into_the_pipe(fake):
    source = _source(fake, Fired(), poll_ms=20, trace_buffer_pages=64, trace_cpu_mask='0-3')
    source.start()
    try:
        _wait(lambda: (fake / 'pid.1').exists(), 'xentrace to start')
    finally:
        source.stop()
    assert (fake / 'argv.1').read_text().split('\n') == [
        '-D', '-e', '0x00082000', '-s', '20', '-S', '64', '-c', '0-3', '/dev/stdout'], \
        'discard old records, HVM handler class only, output to stdout, the pipe'


def test_restarts_xentrace_after_it_exits(fake):
    (fake / 'exit').write_text('')
    fired = Fired()
    source = _source(fake, fired)
    source.start()
    try:
        fired.wait_for(4)
        _wait(lambda: (fake / 'pid.2').exists(), 'the second run')
    finally:
        source.stop()
    assert source.stats.starts >= 2, 'xentrace was started again after its exit'


def test_stop_terminates_xentrace_and_joins(fake):
    fired = Fired()
    source = _source(fake, fired)
    source.start()
    fired.wait_for(2)
    pid = int((fake / 'pid.1').read_text())
    assert _alive(pid), 'xentrace keeps running while the source does'
    source.stop()
    assert not _alive(pid), 'stop() ends the child'
    assert source._thread is None, 'stop() joins the reader'
    source.stop()       # idempotent


def test_unwatched_guest_no_longer_fires(fake):
    fired = Fired()
    source = _source(fake, fired)
    source.unwatch(UUID3)
    source.start()
    try:
        _wait(lambda: source.stats.unknown_domain == 3, 'the three whole triggers to be read')
    finally:
        source.stop()
    assert fired.calls == [], 'no guest is watched, nothing fires'


def test_a_failing_fire_does_not_stop_the_reader(fake):
    calls = []

    def fire(uuid, trigger, detail):
        calls.append(detail)
        if len(calls) == 1:
            raise RuntimeError('agent bug')

    source = _source(fake, fire)
    source.start()
    try:
        _wait(lambda: len(calls) == 2, 'the second trigger after the failed fire()')
    finally:
        source.stop()


def test_missing_xentrace_is_logged_and_stop_still_works(tmp_path, caplog):
    source = _source(tmp_path, Fired())
    source.start()
    _wait(lambda: 'cannot run' in caplog.text, 'the error to be logged')
    source.stop()
    assert source.stats.starts == 0 and source._thread is None, 'nothing ran; stopped'


def test_lost_records_warn_once_per_interval(caplog):
    source = xs.XentraceSource(Fired())
    for count in (3, 4, 5):
        source._handle(xt.Record(1, xt.TRC_LOST_RECORDS, 9, (count, 7, 0, 0)))
    warnings = [r for r in caplog.records if r.levelname == 'WARNING']
    assert len(warnings) == 1, 'a flood of losses is one warning, not a log flood'
    assert source.stats.lost_records == 12, 'every loss is counted'


def test_watch_ignores_guests_without_a_domain_id():
    source = xs.XentraceSource(Fired())
    for address in (None, 'seven', '0', '32752'):
        source.watch(GuestInfo(uuid=UUID5, triggers=(('vmfunc', address),)))
    assert source._by_domid == {}, 'no usable domain id, nothing watched'
    source.watch(GuestInfo(uuid=UUID5, triggers=(('vmfunc', '5'),)))
    source.watch(GuestInfo(uuid=UUID5, triggers=(('vmfunc', '6'),)))
    assert source._by_domid == {6: UUID5}, 'a new domain id replaces the old one'


def test_loaded_with_fire_alone_it_reads_the_global_options():
    source = xs.XentraceSource(Fired())
    assert source.conf is cfg.CONF, \
        'stevedore passes only fire(); the [xen] options come from cfg.CONF'


@settings(max_examples=200, deadline=None)
@given(hst.lists(hst.tuples(
    hst.sampled_from([xt.TRC_HVM_VMI_TRIGGER, xt.TRC_LOST_RECORDS, 0x00082001]),
    hst.lists(hst.integers(0, 0xffffffff), max_size=7),
    hst.one_of(hst.none(), hst.integers(0, (1 << 64) - 1))), max_size=20))
def test_any_record_is_handled_without_raising(records):
    fired = Fired()
    source = xs.XentraceSource(fired)
    source.watch(GuestInfo(uuid=UUID3, triggers=(('vmfunc', '3'),)))
    for event, extra, tsc in records:
        source._handle(xt.Record(0, event, tsc, tuple(extra)))
    stats = source.stats
    assert stats.fired == len(fired.calls), 'every fired run reached fire()'
    assert all(uuid == UUID3 for uuid, _, _ in fired.calls), 'only the watched guest fires'


REAL_XENTRACE = '/usr/lib/xen-4.17/bin/xentrace'


@pytest.mark.skipif(not os.access(REAL_XENTRACE, os.X_OK),
                    reason='xentrace is not installed (apt-get install xen-utils-4.17)')
@pytest.mark.skipif(os.path.exists('/proc/xen/capabilities'),
                    reason='this machine runs under Xen; xentrace would really trace')
def test_real_xentrace_accepts_the_command_and_fails_without_a_hypervisor(caplog):
    """The real binary, no stand-in: it parses our argv, then cannot reach Xen."""
    conf = cfg.ConfigOpts()
    xen_conf.register_opts(conf)
    conf([])
    source = xs.XentraceSource(Fired(), conf)
    source.start()
    try:
        _wait(lambda: 'xentrace exited with status 1' in caplog.text, 'xentrace to exit')
    finally:
        source.stop()
    assert 'xenctrl interface open' in caplog.text, 'it got as far as opening libxenctrl'
    assert source.stats.bad_records == 0 and source.stats.fired == 0, 'it wrote no records'
    assert 'Usage' not in caplog.text, 'the arguments were accepted'
