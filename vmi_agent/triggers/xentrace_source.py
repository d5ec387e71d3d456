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

"""The ``vmfunc`` trigger source: guest triggers on patched Xen, heard through xentrace.

With the ``xen-patch/`` series a guest's ``VMFUNC`` (leaf 0x3f) or magic ``RDTSC``
becomes a ``TRC_HVM_VMI_TRIGGER`` trace record.  This source runs Xen's ``xentrace`` as
a child process with ``/dev/stdout``, a pipe, as its output file and the event mask set
to the HVM handler subclass (``-e 0x00082000``: Xen masks by class and subclass, not by
event, so other handler records come too and are skipped), feeds what it reads to the
streaming :class:`~vmi_agent.triggers.xentrace.Parser`, and fires a ``guest`` run for the
instance whose domain id the record carries.

Xen has one set of trace buffers per host and xentrace disables tracing when it exits, so
only one tracer can run: do not run xentrace by hand beside the agent.

The stream is untrusted (a guest chooses the record's arguments, and a damaged stream is
possible): the parser never raises, a record that does not decode is counted, a domain
id nobody watches is counted and logged at debug level, and anything unexpected in the
reader is logged without ending the thread.  If xentrace exits, it is started again
after a delay that doubles from ``restart_delay_min`` up to ``[xen] restart_delay_max``
(reset after a run that lasted longer than that maximum).

It serves the ``vmfunc`` guest-trigger kind (stevedore ``vmi_agent.triggers``) and hears
the RDTSC trigger too: both write the same record (leaf 0xffffffff for RDTSC), so there
must be no second source for ``rdtsc``, which would start a second xentrace.
"""

import collections
import dataclasses
import logging
import os
import subprocess
import threading
import time

from oslo_config import cfg

from vmi_agent.triggers import base
from vmi_agent.triggers import xentrace

LOG = logging.getLogger(__name__)

#: xentrace -e: class HVM (0x008), subclass HANDLER (0x2), where TRC_HVM_VMI_TRIGGER is.
EVENT_MASK = xentrace.TRC_HVM_HANDLER
#: The leaf word of a record written for RDTSC rather than VMFUNC (xen-patch/README.md).
RDTSC_LEAF = 0xffffffff
#: Domain ids at and above this are reserved (xen/xen.h).
DOMID_FIRST_RESERVED = 0x7ff0
#: xentrace's output file: the pipe we read (see command()).
OUTPUT = '/dev/stdout'
READ_SIZE = 64 * 1024
#: Lines of xentrace's stderr kept to explain an exit; each cut to STDERR_LINE bytes.
STDERR_LINES = 20
STDERR_LINE = 500
STOP_TIMEOUT = 5.0
#: At most one lost-records warning this often (a guest that floods the buffers must
#: not flood the log too); the others go to debug, and stats count them all.
LOST_WARNING_INTERVAL = 60.0


@dataclasses.dataclass
class SourceStats:
    """What the source has seen since it was made."""

    fired: int = 0
    unknown_domain: int = 0
    bad_records: int = 0
    lost_records: int = 0
    starts: int = 0


def describe(trigger):
    """The ``detail`` text of a fired run, for people."""
    if trigger.leaf == RDTSC_LEAF:
        what = 'rdtsc'
    else:
        what = 'vmfunc leaf 0x%x' % trigger.leaf
    return '%s vcpu %d rip 0x%x args 0x%x 0x%x 0x%x' % (
        what, trigger.vcpu, trigger.rip, trigger.arg0, trigger.arg1, trigger.arg2)


class XentraceSource(base.TriggerSource):
    """Runs xentrace and fires ``guest`` runs for watched domains' trigger records."""

    kind = 'vmfunc'
    restart_delay_min = 1.0

    def __init__(self, fire, conf=None):
        super().__init__(fire)
        #: The agent loads sources with ``fire`` alone (stevedore); its options are in
        #: the global ``cfg.CONF``, where the agent registered every group.
        self.conf = cfg.CONF if conf is None else conf
        self.stats = SourceStats()
        self._lock = threading.Lock()
        self._by_domid = {}
        self._by_uuid = {}
        self._stopping = threading.Event()
        self._thread = None
        self._proc = None
        self._lost_warned_at = None

    # -- watching ------------------------------------------------------------------------
    def watch(self, info):
        address = info.trigger_address(self.kind)
        try:
            domid = int(address)
        except (TypeError, ValueError):
            LOG.warning('xentrace: %s has no usable domain id (%r); not watching it',
                        info.uuid, address)
            return
        if not 0 < domid < DOMID_FIRST_RESERVED:
            LOG.warning('xentrace: %s: domain id %d is not a guest\'s', info.uuid, domid)
            return
        with self._lock:
            self._forget(info.uuid)
            self._by_domid[domid] = info.uuid
            self._by_uuid[info.uuid] = domid

    def unwatch(self, instance_uuid):
        with self._lock:
            self._forget(instance_uuid)

    def _forget(self, instance_uuid):
        domid = self._by_uuid.pop(instance_uuid, None)
        if domid is not None and self._by_domid.get(domid) == instance_uuid:
            del self._by_domid[domid]

    # -- the child -----------------------------------------------------------------------
    def command(self):
        """xentrace's argv, writing to its stdout, which is the pipe."""
        xen = self.conf.xen
        argv = [xen.xentrace_path, '-D', '-e', '0x%08x' % EVENT_MASK,
                '-s', str(xen.poll_ms), '-S', str(xen.trace_buffer_pages)]
        if xen.trace_cpu_mask:
            argv += ['-c', xen.trace_cpu_mask]
        # Xen 4.17's xentrace insists on an output file argument (without one it prints
        # its usage, on stdout, and exits 1), so name its stdout.
        return argv + [OUTPUT]

    def start(self):
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name='xentrace-source',
                                        daemon=True)
        self._thread.start()

    def stop(self):
        self._stopping.set()
        with self._lock:
            proc = self._proc
        if proc is not None:
            _terminate(proc)
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT * 2)
            self._thread = None

    def _run(self):
        delay = self.restart_delay_min
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                self._run_once()
            except Exception:
                LOG.exception('xentrace: reader failed')
            if self._stopping.is_set():
                break
            if time.monotonic() - started > self.conf.xen.restart_delay_max:
                delay = self.restart_delay_min
            LOG.warning('xentrace: restarting in %.1f s', delay)
            self._stopping.wait(delay)
            delay = min(delay * 2, self.conf.xen.restart_delay_max)

    def _spawn(self):
        argv = self.command()
        with self._lock:
            if self._stopping.is_set():
                return None
            try:
                self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                              stdout=subprocess.PIPE,
                                              stderr=subprocess.PIPE)
            except OSError as exc:
                LOG.error('xentrace: cannot run %s: %s', argv[0], exc)
                return None
            self.stats.starts += 1
            return self._proc

    def _run_once(self):
        proc = self._spawn()
        if proc is None:
            return
        tail = collections.deque(maxlen=STDERR_LINES)
        drain = threading.Thread(target=_drain, args=(proc.stderr, tail),
                                 name='xentrace-stderr', daemon=True)
        drain.start()
        parser = xentrace.Parser()
        try:
            fd = proc.stdout.fileno()
            while True:
                data = os.read(fd, READ_SIZE)
                if not data:
                    break
                for record in parser.feed(data):
                    try:
                        self._handle(record)
                    except Exception:
                        # A bug here must cost one record, not the trace session.
                        LOG.exception('xentrace: cannot handle %s', record)
        finally:
            _terminate(proc)
            drain.join(STOP_TIMEOUT)
            proc.stdout.close()
            with self._lock:
                self._proc = None
        cut = parser.close()
        if cut is not None:
            LOG.debug('xentrace: stream ended mid-record: %s', cut)
        if parser.stats.errors:
            LOG.warning('xentrace: %d damaged windows, %d garbage bytes skipped',
                        parser.stats.errors, parser.stats.garbage_bytes)
        if not self._stopping.is_set():
            LOG.warning('xentrace exited with status %s: %s', proc.returncode,
                        ' | '.join(tail) or 'no message')

    # -- records -------------------------------------------------------------------------
    def _handle(self, record):
        if record.event == xentrace.TRC_HVM_VMI_TRIGGER:
            self._trigger(record)
        elif record.event == xentrace.TRC_LOST_RECORDS:
            self._lost(record)

    def _trigger(self, record):
        try:
            trigger = xentrace.decode_trigger(record)
        except xentrace.TraceFormatError as exc:
            self.stats.bad_records += 1
            LOG.debug('xentrace: %s', exc)
            return
        with self._lock:
            instance = self._by_domid.get(trigger.domid)
        if instance is None:
            self.stats.unknown_domain += 1
            LOG.debug('xentrace: trigger from unwatched domain %d', trigger.domid)
            return
        self.stats.fired += 1
        try:
            self.fire(instance, 'guest', describe(trigger))
        except Exception:
            LOG.exception('xentrace: fire() raised for %s', instance)

    def _lost(self, record):
        try:
            lost = xentrace.decode_lost(record)
        except xentrace.TraceFormatError as exc:
            self.stats.bad_records += 1
            LOG.debug('xentrace: %s', exc)
            return
        self.stats.lost_records += lost.count
        now = time.monotonic()
        level = logging.DEBUG
        if self._lost_warned_at is None or now - self._lost_warned_at >= LOST_WARNING_INTERVAL:
            self._lost_warned_at = now
            level = logging.WARNING
        LOG.log(level, 'xentrace: Xen dropped %d trace records on cpu %d (the first from '
                'domain %d; %d lost so far); guest triggers may have been lost: raise '
                '[xen] trace_buffer_pages', lost.count, lost.cpu, lost.domid,
                self.stats.lost_records)


def _drain(stream, tail):
    """Keep the last lines of ``stream`` (xentrace's stderr) in ``tail``; bounded."""
    try:
        for line in iter(lambda: stream.readline(STDERR_LINE), b''):
            tail.append(line.decode('utf-8', 'replace').strip())
    except (OSError, ValueError):
        pass
    finally:
        stream.close()


def _terminate(proc):
    """SIGTERM (xentrace then turns tracing off), SIGKILL if it lingers; reap it."""
    if proc.poll() is None:
        try:
            proc.terminate()
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        except OSError:
            pass
