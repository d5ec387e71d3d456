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

"""Guest triggers on QEMU/KVM: a byte written to the isa-debugcon port.

A QEMU guest asks for a run with one ``outb`` to port 0x402 (about 1 us of guest time).
QEMU hands the byte to a chardev; the driver gives each guest a unix stream socket chardev
with ``server=on,wait=off`` (``-chardev socket,id=dbg,path=...,server=on,wait=off -device
isa-debugcon,iobase=0x402,chardev=dbg``), so QEMU listens, the agent connects as its one
client, and every byte the guest writes arrives on that connection.  QEMU drops the output
while no client is connected, so the agent reconnects quickly when QEMU restarts.

One thread serves every guest of the host and sleeps in ``selectors`` until a socket has
data, a reconnect is due, or ``watch``/``unwatch``/``stop`` wake it (through a socket
pair): no polling, so a trigger reaches ``fire`` within microseconds.  The guest controls
what and how much it writes, so each wakeup reads at most :data:`MAX_READ` bytes per guest
and makes one ``fire`` call for them, whatever they are: a flooding guest costs O(1) work
per wakeup, nothing is buffered, and the other guests are served in the same loop.  Rate
limiting is the agent's job (``vmi_agent.triggers.ratelimit``).
"""

import logging
import selectors
import socket
import threading
import time

from vmi_agent.triggers import base

LOG = logging.getLogger(__name__)

#: Bytes read from one guest's socket per wakeup, reported by one ``fire`` call.
MAX_READ = 4096


def describe(data):
    """The ``detail`` of a fire for the bytes ``data`` read in one go."""
    if len(data) == 1:
        return 'debugcon byte 0x%02x' % data[0]
    return 'debugcon %d bytes, first 0x%02x' % (len(data), data[0])


class DebugconSource(base.TriggerSource):
    """Connects to each watched guest's debugcon socket and fires on every read.

    A socket that is missing, refuses, or closes (QEMU not started yet, restarted, gone)
    is retried after ``retry_initial`` seconds, doubling up to ``retry_max``, for as long
    as the guest is watched.  ``watch``, ``unwatch`` and ``stop`` may be called from any
    thread, also before ``start``.
    """

    kind = 'debugcon'

    def __init__(self, fire, retry_initial=0.5, retry_max=5.0, clock=time.monotonic):
        super().__init__(fire)
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self._clock = clock
        self._lock = threading.Lock()
        self._wanted = {}           # uuid -> socket path; guarded by _lock
        self._loop = None           # the running _Loop; guarded by _lock

    def start(self):
        with self._lock:
            if self._loop is not None:
                return
            self._loop = _Loop(self)
            self._loop.start()

    def stop(self):
        with self._lock:
            loop, self._loop = self._loop, None
            if loop is None:
                return
            loop.ask_to_stop()
        loop.join()

    def watch(self, info):
        """Listen to ``info``'s debugcon socket; a guest without one is not watched."""
        address = info.trigger_address(self.kind)
        with self._lock:
            if address:
                self._wanted[info.uuid] = address
            else:
                self._wanted.pop(info.uuid, None)
            self._changed()

    def unwatch(self, instance_uuid):
        with self._lock:
            self._wanted.pop(instance_uuid, None)
            self._changed()

    def wanted(self):
        """``{instance_uuid: socket path}`` of every watched guest (a copy)."""
        with self._lock:
            return dict(self._wanted)

    def _changed(self):
        if self._loop is not None:
            self._loop.wake()

    def _fire(self, uuid, data):
        try:
            self.fire(uuid, 'guest', describe(data))
        except Exception:
            LOG.exception('debugcon: fire(%s) failed; still listening', uuid)


class _Watch:
    """One guest's connection, or when it is due to be tried again."""

    def __init__(self, uuid, address, backoff, now):
        self.uuid = uuid
        self.address = address
        self.sock = None
        self.backoff = backoff
        self.retry_at = now
        self.failures = 0


class _Loop:
    """The thread of one ``start()``..``stop()``: its selector, wake pair and sockets."""

    def __init__(self, source):
        self.source = source
        self.selector = selectors.DefaultSelector()
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        self.selector.register(self.wake_r, selectors.EVENT_READ, None)
        self.watches = {}
        self.dirty = True           # read the wanted set on the first pass
        self.stopping = False
        self.thread = threading.Thread(target=self.run, name='vmi-debugcon', daemon=True)

    def start(self):
        self.thread.start()

    def ask_to_stop(self):
        self.stopping = True
        self.wake()

    def join(self):
        if self.thread is not threading.current_thread():
            self.thread.join()

    def wake(self):
        """Make the thread look at the wanted set again (called with the source's lock)."""
        self.dirty = True
        try:
            self.wake_w.send(b'\0')
        except OSError:
            pass    # the pipe is full (a wake is pending anyway) or the loop has ended

    # -- the thread --------------------------------------------------------------------

    def run(self):
        try:
            while not self.stopping:
                try:
                    self.step()
                except Exception:
                    LOG.exception('debugcon: unexpected error in the trigger loop')
        finally:
            self.close()

    def step(self):
        self.reconcile()
        now = self.source._clock()
        for watch in list(self.watches.values()):
            if watch.sock is None and watch.retry_at <= now:
                self.connect(watch)
        for key, _ in self.selector.select(self.timeout()):
            if key.data is None:
                self.drain_wake()
            elif key.data.sock is not None:
                self.read(key.data)

    def reconcile(self):
        with self.source._lock:
            if not self.dirty:
                return
            self.dirty = False
            wanted = dict(self.source._wanted)
        for uuid, watch in list(self.watches.items()):
            if wanted.get(uuid) != watch.address:
                self.disconnect(watch)
                del self.watches[uuid]
                LOG.debug('debugcon: %s no longer watched', uuid)
        now = self.source._clock()
        for uuid, address in wanted.items():
            if uuid not in self.watches:
                self.watches[uuid] = _Watch(uuid, address, self.source.retry_initial, now)

    def timeout(self):
        pending = [w.retry_at for w in self.watches.values() if w.sock is None]
        if not pending:
            return None
        return max(0.0, min(pending) - self.source._clock())

    def connect(self, watch):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.connect(watch.address)
        except (OSError, TypeError, ValueError) as exc:
            sock.close()
            watch.failures += 1
            log = LOG.warning if watch.failures == 1 else LOG.debug
            log('debugcon: cannot connect to %s for %s (%s); retrying every %.1f-%.1f s',
                watch.address, watch.uuid, exc, self.source.retry_initial,
                self.source.retry_max)
            self.retry_later(watch)
            return
        watch.sock = sock
        watch.failures = 0
        watch.backoff = self.source.retry_initial
        self.selector.register(sock, selectors.EVENT_READ, watch)
        LOG.info('debugcon: listening to %s for %s', watch.address, watch.uuid)

    def read(self, watch):
        try:
            data = watch.sock.recv(MAX_READ)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.lost(watch, exc)
            return
        if not data:
            self.lost(watch, 'QEMU closed the socket')
            return
        self.source._fire(watch.uuid, data)

    def lost(self, watch, why):
        LOG.warning('debugcon: lost %s for %s (%s); reconnecting', watch.address,
                    watch.uuid, why)
        self.disconnect(watch)
        self.retry_later(watch)

    def retry_later(self, watch):
        watch.retry_at = self.source._clock() + watch.backoff
        watch.backoff = min(watch.backoff * 2, self.source.retry_max)

    def disconnect(self, watch):
        if watch.sock is None:
            return
        try:
            self.selector.unregister(watch.sock)
        except (KeyError, ValueError):
            pass
        watch.sock.close()
        watch.sock = None

    def drain_wake(self):
        try:
            while self.wake_r.recv(MAX_READ):
                pass
        except OSError:
            pass    # BlockingIOError: drained

    def close(self):
        for watch in self.watches.values():
            self.disconnect(watch)
        self.watches.clear()
        with self.source._lock:
            self.wake_w.close()     # wake() after this fails quietly
        self.wake_r.close()
        self.selector.close()
