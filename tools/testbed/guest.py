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

"""Boot the test-bed guest under QEMU and drive it from tests and benchmarks.

The introspection engine reads a guest's memory from outside; the tests need to know what
the guest itself says is true (its processes, its modules) to compare.  :class:`Guest`
boots the Debian kernel and busybox initramfs from :mod:`tools.testbed.assets` under
QEMU/TCG with its RAM in a shared file, as a libvirt host with file-backed memory would, and
gives tests both sides:

- the guest's own view, through a command shell on the serial console (:meth:`Guest.run`,
  :meth:`Guest.processes`, :meth:`Guest.modules`, ...), and ways to change it
  (:meth:`Guest.spawn`, :meth:`Guest.insmod`,
  :meth:`Guest.put` and :meth:`Guest.insmod_file` for a module built for the test, ...);
- the host's view: the RAM file (:attr:`Guest.ram_path`, :meth:`Guest.read`,
  :meth:`Guest.write_u64`), QMP (:attr:`Guest.qmp`, :meth:`Guest.pause`, :meth:`Guest.dump`)
  and the debug port the guest's trigger writes to (:attr:`Guest.debugcon_path`);
- what the agent's ``qemu`` driver needs to find it: a second QMP socket for the agent
  (:attr:`Guest.agent_qmp_path`) and a guest descriptor (:meth:`Guest.write_descriptor`),
  and a way to make it vanish (:meth:`Guest.kill`).

The serial protocol is described with its guest half, ``assets.SERIAL_SHELL``.  KASLR stays
on, as in production.  ``python -m tools.testbed.guest`` boots a guest for a developer.
"""

import argparse
import base64
import ctypes
import hashlib
import json
import mmap
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid as uuid_module
import weakref
from pathlib import Path
from typing import NamedTuple

from tools.testbed import assets as testbed_assets
from vmi_agent.drivers.qmp import QMPClient

QEMU = 'qemu-system-x86_64'
SHM_DIR = Path('/dev/shm')
PREFIX = 'nova-vmi-'     # + creator pid + '-': lets a later run remove what a crash left
DEBUGCON_PORT = testbed_assets.DEBUGCON_PORT
# panic=-1 with -no-reboot: a guest that panics makes QEMU exit instead of hanging a test.
KERNEL_ARGS = 'console=ttyS0,115200 quiet panic=-1'

# q35 keeps RAM below 2.75 GiB in one piece; bigger guests get 2 GiB low and the rest above
# 4 GiB (QEMU's pc_q35_init), so a physical address is a file offset only below that.
_Q35_SPLIT_FROM = 0xb0000000
_Q35_LOW_WHEN_SPLIT = 0x80000000
_FOUR_GIB = 1 << 32

_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)
_READY = b'\x01VMI READY '
_READY_LINE = re.compile(rb'\x01VMI READY (\d+)\n')
_INTERRUPT = b'\x03'        # ^C: the guest tty turns it into SIGINT for the running script
# /proc shows a busy workqueue worker as "kworker/0:1-events": the suffix is not in its comm.
_WORKQUEUE_SUFFIX = re.compile(r'^(kworker/[^-+]*)[-+].*', re.DOTALL)
#: Bytes of a file per guest command in :meth:`Guest.put` (base64 twice: 15 KiB a line).
PUT_CHUNK = 8192


class GuestError(RuntimeError):
    """The guest could not be started or driven (QEMU died, the console broke, ...)."""


class GuestTimeoutError(GuestError):
    """The guest did not answer in time."""


class GuestCommandError(GuestError):
    """A guest command exited with a non-zero status."""

    def __init__(self, cmd, result):
        self.cmd = cmd
        self.result = result
        super().__init__('guest command %r exited with status %d\nstdout: %s\nstderr: %s'
                         % (cmd, result.status, result.stdout[-2000:], result.stderr[-2000:]))


class CommandResult(NamedTuple):
    """What a guest command printed and how it exited."""

    status: int
    stdout: str
    stderr: str


def _die_with_parent():
    """In QEMU's child process: get SIGTERM when the test process dies, however it dies."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _remove_stale_files():
    """Delete RAM files and temporary directories of test processes that died uncleanly."""
    for parent in (SHM_DIR, Path(tempfile.gettempdir())):
        for path in parent.glob(PREFIX + '*'):
            match = re.fullmatch(re.escape(PREFIX) + r'(\d+)-\w+', path.name)
            if match and not Path('/proc', match.group(1)).exists():
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)


class _Console:
    """The guest's serial console: a byte stream with a read buffer and a diagnostic tail."""

    TAIL = 16384

    def __init__(self, sock):
        self._sock = sock
        self._buffer = bytearray()
        self.tail = b''

    def _fill(self, deadline, what):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise GuestTimeoutError('timed out waiting for %s on the serial console' % what)
        self._sock.settimeout(remaining)
        try:
            chunk = self._sock.recv(1 << 20)
        except socket.timeout:
            raise GuestTimeoutError('timed out waiting for %s on the serial console'
                                    % what) from None
        except OSError as exc:
            raise GuestError('serial console failed: %s' % exc) from exc
        if not chunk:
            raise GuestError('serial console closed (QEMU exited?) while waiting for %s'
                             % what)
        self._buffer += chunk

    def _take(self, n):
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        self.tail = (self.tail + data)[-self.TAIL:]
        return data

    def recent(self, n):
        """The last ``n`` bytes received, consumed or not."""
        return (self.tail + self._buffer)[-n:]

    def read_until(self, token, deadline, what):
        """Consume the stream through ``token``; return what came before it."""
        start = 0
        while True:
            at = self._buffer.find(token, start)
            if at >= 0:
                return self._take(at + len(token))[:at]
            start = max(len(self._buffer) - len(token) + 1, 0)
            self._fill(deadline, what)

    def read_exact(self, n, deadline, what):
        """Consume exactly ``n`` bytes."""
        while len(self._buffer) < n:
            self._fill(deadline, what)
        return self._take(n)

    def discard_pending(self):
        """Consume and return what arrived between commands (it stays in the tail too)."""
        self._sock.setblocking(False)
        try:
            while True:
                chunk = self._sock.recv(1 << 20)
                if not chunk:
                    break
                self._buffer += chunk
        except (BlockingIOError, InterruptedError):
            pass
        finally:
            self._sock.setblocking(True)
        return self._take(len(self._buffer))

    def send(self, data, deadline):
        self._sock.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise GuestError('cannot write to the serial console: %s' % exc) from exc


class _Resources:
    """What a guest holds on the host; released once, by close() or at interpreter exit.

    Kept apart from :class:`Guest` so that a ``weakref.finalize`` can release it.
    """

    def __init__(self):
        self.tmpdir = None
        self.ram_path = None
        self.proc = None
        self.sockets = []
        self.qmp = None
        self.mm = None

    def release(self):
        if self.qmp is not None:
            self.qmp.close()
        for sock in self.sockets:
            sock.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.mm is not None:
            self.mm.close()
        if self.ram_path is not None:
            self.ram_path.unlink(missing_ok=True)
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)


class Guest:
    """A booted test-bed guest (QEMU/TCG, q35, one vCPU, RAM in ``/dev/shm``).

    Booting takes a few seconds; :attr:`boot_seconds` says how many.  Use it as a context
    manager or call :meth:`close`; a guest that is neither is still shut down, and its RAM
    file deleted, when it is garbage-collected or the interpreter exits.
    """

    def __init__(self, flavour='amd64', memory_mb=256, assets=None, boot_timeout=60.0,
                 uuid=None):
        self.assets = assets or testbed_assets.ensure_assets(flavour)
        self.memory_mb = memory_mb
        #: The guest's instance UUID, as Nova would give it.
        self.uuid = str(uuid_module.UUID(uuid)) if uuid else str(uuid_module.uuid4())
        self._lock = threading.RLock()
        self._broken = None
        self._spawned = set()
        self._res = _Resources()
        self._finalizer = weakref.finalize(self, self._res.release)
        try:
            self._boot(boot_timeout)
        except BaseException:
            self.close()
            raise

    # -- life cycle ------------------------------------------------------------------------

    def _boot(self, boot_timeout):
        _remove_stale_files()
        res = self._res
        prefix = '%s%d-' % (PREFIX, os.getpid())
        res.tmpdir = Path(tempfile.mkdtemp(prefix=prefix))
        res.ram_path = SHM_DIR / (prefix + secrets.token_hex(6))
        self.qmp_path = res.tmpdir / 'qmp.sock'
        # QEMU serves one client per QMP socket: the test bed keeps qmp_path for itself.
        self.agent_qmp_path = res.tmpdir / 'agent-qmp.sock'
        self.debugcon_path = res.tmpdir / 'debugcon.sock'
        self.console_path = res.tmpdir / 'console.sock'
        self.qemu_log = res.tmpdir / 'qemu.log'

        # QEMU connects to us, so not a byte of the boot log is lost.
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        res.sockets.append(listener)
        listener.bind(str(self.console_path))
        listener.listen(1)

        started = time.monotonic()
        with open(self.qemu_log, 'wb') as log:
            res.proc = subprocess.Popen(self.qemu_command(), stdin=subprocess.DEVNULL,
                                        stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True,
                                        preexec_fn=_die_with_parent)
        listener.settimeout(1.0)
        while True:
            try:
                sock, _ = listener.accept()
                break
            except socket.timeout:
                self._check_qemu('connecting to the serial console')
                if time.monotonic() - started > boot_timeout:
                    raise GuestTimeoutError('QEMU did not open the serial console in %ss%s'
                                            % (boot_timeout, self._diagnostics())) from None
        res.sockets.append(sock)
        self._console = _Console(sock)
        deadline = started + boot_timeout
        try:
            self._console.read_until(_READY, deadline, 'the guest shell')
            self._shell_pid = int(self._console.read_until(b'\n', deadline, 'the shell pid'))
        except GuestError as exc:
            self._check_qemu('booting')
            raise GuestError('guest did not boot: %s%s' % (exc, self._diagnostics())) from exc
        self.boot_seconds = time.monotonic() - started

        res.qmp = QMPClient(self.qmp_path, timeout=30.0, connect_timeout=10.0)
        fd = os.open(res.ram_path, os.O_RDWR)
        try:
            res.mm = mmap.mmap(fd, 0, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        if len(res.mm) != self.memory_mb << 20:
            raise GuestError('RAM file %s has %d bytes, expected %d MiB'
                             % (res.ram_path, len(res.mm), self.memory_mb))

    def qemu_command(self):
        """The QEMU command line this guest boots with."""
        res = self._res
        return [
            QEMU, '-accel', 'tcg',
            '-machine', 'q35,memory-backend=mem',
            '-object', 'memory-backend-file,id=mem,size=%dM,mem-path=%s,share=on'
            % (self.memory_mb, res.ram_path),
            '-m', '%dM' % self.memory_mb, '-smp', '1',
            '-nographic', '-nodefaults', '-no-reboot', '-monitor', 'none',
            '-kernel', str(self.assets.vmlinuz), '-initrd', str(self.assets.initramfs),
            '-append', KERNEL_ARGS,
            '-qmp', 'unix:%s,server=on,wait=off' % self.qmp_path,
            '-qmp', 'unix:%s,server=on,wait=off' % self.agent_qmp_path,
            '-chardev', 'socket,id=con,path=%s' % self.console_path,
            '-serial', 'chardev:con',
            '-chardev', 'socket,id=dbg,path=%s,server=on,wait=off' % self.debugcon_path,
            '-device', 'isa-debugcon,iobase=0x%x,chardev=dbg' % DEBUGCON_PORT,
            '-device', 'vmcoreinfo',
        ]

    def _check_qemu(self, doing):
        status = self._res.proc.poll()
        if status is not None:
            raise GuestError('QEMU exited with status %d while %s%s'
                             % (status, doing, self._diagnostics()))

    def _diagnostics(self):
        try:
            log = self.qemu_log.read_text(errors='replace')[-4000:]
        except OSError:
            log = ''
        console = getattr(self, '_console', None)
        tail = console.recent(4000).decode(errors='replace') if console else ''
        return '\nQEMU command: %s\nQEMU output:\n%s\nserial console (last bytes):\n%s' % (
            shlex.join(self.qemu_command()), log, tail)

    def close(self):
        """Stop QEMU and delete the RAM file and the temporary directory; idempotent."""
        self._finalizer()

    def kill(self):
        """SIGKILL QEMU and wait for it: the guest vanishes as if QEMU crashed.

        The RAM file and the sockets' files stay until :meth:`close`.
        """
        proc = self._res.proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    # -- host side ---------------------------------------------------------------------------

    @property
    def ram_path(self):
        """The file that backs guest RAM (``/dev/shm/nova-vmi-...``)."""
        return self._res.ram_path

    def descriptor(self):
        """The guest descriptor the agent's ``qemu`` driver reads (``[qemu] guest_dir``)."""
        return {
            'uuid': self.uuid,
            'name': 'testbed-%s' % self.uuid[:8],
            'ram_path': str(self.ram_path),
            'qmp_path': str(self.agent_qmp_path),
            'debugcon_path': str(self.debugcon_path),
            'machine': 'q35',
        }

    def write_descriptor(self, directory):
        """Write :meth:`descriptor` as ``<directory>/<uuid>.json``, atomically; its path."""
        path = Path(directory) / ('%s.json' % self.uuid)
        fd, tmp = tempfile.mkstemp(prefix='.%s.' % self.uuid, suffix='.tmp', dir=directory)
        try:
            with os.fdopen(fd, 'w') as f:
                json.dump(self.descriptor(), f, indent=2)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @property
    def vmlinuz(self):
        """The booted kernel image."""
        return self.assets.vmlinuz

    @property
    def release(self):
        """The booted kernel's release, as ``uname -r`` says it."""
        return self.assets.release

    @property
    def qmp(self):
        """A connected :class:`vmi_agent.drivers.qmp.QMPClient`."""
        return self._res.qmp

    @property
    def console_log(self):
        """The last bytes seen on the serial console (for diagnosing failures)."""
        return self._console.recent(_Console.TAIL).decode(errors='replace')

    def pause(self):
        """Stop the vCPU (QMP ``stop``)."""
        self.qmp.execute('stop')

    def resume(self):
        """Resume the vCPU (QMP ``cont``)."""
        self.qmp.execute('cont')

    def running(self):
        """Whether the vCPU runs (QMP ``query-status``)."""
        return self.qmp.execute('query-status')['running']

    def dump(self, path, fmt='elf'):
        """Write guest memory to ``path`` and return the path.

        ``elf``: QMP ``dump-guest-memory`` (paging off; waits until complete); with
        ``qemu_fw_cfg`` loaded it carries a VMCOREINFO note.  ``raw``: a copy of the RAM
        file taken while the guest is paused (file offsets, see :meth:`read`).
        """
        path = Path(path).resolve()
        if fmt == 'elf':
            self.qmp.execute('dump-guest-memory', paging=False, protocol='file:%s' % path,
                             timeout=300)
        elif fmt == 'raw':
            was_running = self.running()
            if was_running:
                self.pause()
            try:
                shutil.copyfile(self.ram_path, path)
            finally:
                if was_running:
                    self.resume()
        else:
            raise ValueError('unknown dump format %r (elf or raw)' % fmt)
        return path

    def _ram_offset(self, paddr, size):
        total = self.memory_mb << 20
        low = total if total < _Q35_SPLIT_FROM else _Q35_LOW_WHEN_SPLIT
        if 0 <= paddr and paddr + size <= low:
            return paddr
        if paddr >= _FOUR_GIB and paddr - _FOUR_GIB + size <= total - low:
            return paddr - _FOUR_GIB + low
        raise ValueError('physical range 0x%x+%d is not guest RAM' % (paddr, size))

    def read(self, paddr, n):
        """Read ``n`` bytes of guest-physical memory from the RAM file."""
        offset = self._ram_offset(paddr, n)
        return self._res.mm[offset:offset + n]

    def write_u64(self, paddr, value):
        """Store one aligned little-endian u64 at guest-physical ``paddr``, in one store.

        ``struct.pack_into`` would zero the field before writing it, and a running guest
        can see that zero; a ``Q`` memoryview stores all 8 bytes at once.
        """
        if paddr % 8:
            raise ValueError('physical address 0x%x is not 8-byte aligned' % paddr)
        offset = self._ram_offset(paddr, 8)
        with memoryview(self._res.mm) as raw, raw.cast('Q') as words:
            words[offset // 8] = value

    # -- guest side ------------------------------------------------------------------------

    def run_status(self, cmd, timeout=10):
        """Run a shell script in the guest; return a :class:`CommandResult`.

        The script runs under busybox ``sh`` in ``/``, stdin from ``/dev/null``.  If it does
        not finish within ``timeout`` seconds it is interrupted (^C) and
        :class:`GuestTimeoutError` is raised; the guest shell stays usable.
        """
        with self._lock:
            if self._broken:
                raise GuestError('guest shell is unusable: %s' % self._broken)
            if not self.running():
                raise GuestError('guest is paused: resume() it before running %r' % cmd)
            console = self._console
            marker = secrets.token_hex(8).encode()
            self._note_respawn(console.discard_pending())
            deadline = time.monotonic() + timeout
            console.send(marker + b' ' + base64.b64encode(cmd.encode()) + b'\n', deadline)
            try:
                self._note_respawn(
                    console.read_until(b'\x01VMI ' + marker + b' ', deadline, 'the reply'))
                header = console.read_until(b'\n', deadline, 'the reply header').split()
                status, out_len, err_len = (int(f) for f in header)
                out = console.read_exact(out_len, deadline, 'the output')
                err = console.read_exact(err_len, deadline, 'the error output')
                trailer = console.read_until(b'\n', deadline, 'the reply trailer')
            except GuestTimeoutError:
                self._interrupt(marker)
                raise GuestTimeoutError('guest command %r did not finish in %ss; interrupted'
                                        % (cmd, timeout)) from None
            except (GuestError, ValueError) as exc:
                self._broken = 'reply to %r broke: %s' % (cmd, exc)
                self._check_qemu('running %r' % cmd)
                raise GuestError('%s%s' % (self._broken, self._diagnostics())) from exc
            if trailer != b'\x01VMI ' + marker + b' END':
                self._broken = 'reply to %r ends in %r (console output interleaved?)' % (
                    cmd, trailer[-200:])
                raise GuestError(self._broken + self._diagnostics())
        return CommandResult(status, out.decode(errors='replace'), err.decode(errors='replace'))

    def _note_respawn(self, junk):
        """Follow the serial shell's pid if init had to start it again."""
        for pid in _READY_LINE.findall(junk):
            self._shell_pid = int(pid)

    def _interrupt(self, marker):
        """Interrupt the script that timed out and wait until the shell is free again."""
        console = self._console
        deadline = time.monotonic() + 10
        try:
            console.send(_INTERRUPT, deadline)
            self._note_respawn(console.read_until(
                b'\x01VMI ' + marker + b' END\n', deadline, 'the interrupted reply'))
        except GuestError as exc:
            self._broken = 'an interrupted command did not stop: %s' % exc

    def run(self, cmd, timeout=10):
        """Run a shell script in the guest; return its stdout.

        Raises :class:`GuestCommandError` (status, stdout and stderr) if it exits non-zero.
        """
        result = self.run_status(cmd, timeout)
        if result.status != 0:
            raise GuestCommandError(cmd, result)
        return result.stdout

    def trigger(self, byte=b'T'):
        """Make the guest write one byte to the debug port, as the guest trigger does."""
        if len(byte) != 1:
            raise ValueError('trigger takes one byte, not %r' % (byte,))
        self.run('%s --port 0x%x 0x%02x' % (testbed_assets.GUEST_TRIGGER_PROGRAM,
                                            testbed_assets.DEBUGCON_PORT, byte[0]))

    def spawn(self, name, count=1, timeout=None):
        """Start ``count`` idle processes whose comm is ``name``; return their pids.

        Each runs ``assets.idle_program`` (pause() forever) through a symlink called
        ``name``, so it is a real exec'd program at a few dozen KiB of guest memory; all
        start from one guest command.  They ignore SIGHUP and SIGINT, are orphans that init
        reaps, and live until :meth:`stop`.
        """
        if (not 1 <= len(name) <= 15 or not name.isascii() or not name.isprintable()
                or '/' in name or name in ('.', '..')):
            raise ValueError('process name must be 1 to 15 printable ASCII chars, no "/": %r'
                             % name)
        if count < 1:
            raise ValueError('count must be positive, not %r' % count)
        qname = shlex.quote(name)
        script = f'''
trap '' HUP
mkdir -p /tmp/vmi/bin
ln -sfn {testbed_assets.GUEST_IDLE_PROGRAM} /tmp/vmi/bin/{qname}
pids=
i=0
while [ $i -lt {count} ]; do
    /tmp/vmi/bin/{qname} </dev/null >/dev/null 2>&1 &
    pids="$pids $!"
    i=$((i + 1))
done
for p in $pids; do
    c=
    while [ "$c" != {qname} ]; do
        IFS= read -r c </proc/$p/comm || {{ echo "process $p died" >&2; exit 1; }}
    done
    echo $p
done
'''
        pids = [int(p) for p in self.run(script, timeout or 10 + count * 0.1).split()]
        self._spawned.update(pids)
        return pids

    def stop(self, *pids, timeout=None):
        """Kill processes (SIGKILL) and wait until init has reaped them (gone from /proc)."""
        if not pids:
            return
        listed = ' '.join(str(int(p)) for p in pids)
        self.run(f'''
kill -9 {listed}
status=$?
for p in {listed}; do
    while [ -e /proc/$p ]; do usleep 1000; done
done
exit $status
''', timeout or 10 + len(pids) * 0.05)
        self._spawned.difference_update(pids)

    def stop_spawned(self):
        """Stop every process :meth:`spawn` started and :meth:`stop` has not."""
        self.stop(*sorted(self._spawned))

    def _process_table(self):
        """pid -> (comm, ppid), without the serial shell's own transient children."""
        # A process that exits while cat runs makes it complain and fail: that is fine.
        out = self.run_status('cat /proc/[0-9]*/stat', timeout=60).stdout
        table = {}
        for line in out.splitlines():
            head, sep, tail = line.rpartition(') ')
            pid, sep2, comm = head.partition(' (')
            if sep and sep2:
                table[int(pid)] = (_WORKQUEUE_SUFFIX.sub(r'\1', comm), int(tail.split()[1]))
        transient = set()
        for pid, (_, parent) in table.items():
            for _ in range(64):         # bounded: a pid table is a tree, but be sure
                if parent == self._shell_pid:
                    transient.add(pid)
                    break
                if parent not in table:
                    break
                parent = table[parent][1]
        return {pid: entry for pid, entry in table.items() if pid not in transient}

    def processes(self):
        """The guest's truth: pid -> comm for every pid in ``/proc``, kernel threads included.

        The commands that ask (children of the serial shell) are left out; the serial shell
        itself, like a getty, is in.
        """
        return {pid: comm for pid, (comm, _) in self._process_table().items()}

    def user_processes(self):
        """Like :meth:`processes`, without kernel threads (kthreadd, pid 2, and its children)."""
        return {pid: comm for pid, (comm, ppid) in self._process_table().items()
                if pid != 2 and ppid != 2}

    def modules(self):
        """Loaded modules from ``/proc/modules``: name -> size."""
        return {name: size for name, (size, _) in self._module_table().items()}

    def module_states(self):
        """Loaded modules from ``/proc/modules``: name -> state (Live, Loading, Unloading)."""
        return {name: state for name, (_, state) in self._module_table().items()}

    def _module_table(self):
        table = {}
        for line in self.run('cat /proc/modules').splitlines():
            fields = line.split()
            table[fields[0]] = (int(fields[1]), fields[4])
        return table

    def available_modules(self):
        """Modules in the guest's ``/lib/modules`` (the boot ones are loaded already)."""
        return sorted(self.assets.boot_modules + self.assets.test_modules)

    def insmod(self, name):
        """Load ``/lib/modules/<name>.ko``."""
        if name not in self.available_modules():
            raise ValueError('no module %r in the guest (have: %s)'
                             % (name, ', '.join(self.available_modules())))
        self.run('insmod %s/%s.ko' % (testbed_assets.GUEST_MODULE_DIR, name))

    def rmmod(self, name):
        """Unload module ``name``."""
        self.run('rmmod %s' % shlex.quote(name))

    def put(self, path, data, mode=0o644):
        """Copy ``data`` (bytes) into the guest as the file ``path``; return its size.

        The bytes travel over the serial console as base64, :data:`PUT_CHUNK` bytes per
        guest command, into a temporary file that is checked (SHA-256) and then renamed
        to ``path``, so the file is whole or absent.  A test module of 11 KiB takes about
        a second.
        """
        path = str(path)
        if not path.startswith('/') or '\n' in path or '\0' in path:
            raise ValueError('guest path must be absolute, one line: %r' % path)
        data = bytes(data)
        qpath = shlex.quote(path)
        part = shlex.quote(path + '.part')
        self.run(': > %s' % part)
        for start in range(0, len(data), PUT_CHUNK):
            chunk = base64.b64encode(data[start:start + PUT_CHUNK]).decode()
            self.run("base64 -d >> %s <<'EOF'\n%s\nEOF" % (part, chunk), timeout=30)
        digest = hashlib.sha256(data).hexdigest()
        self.run('set -- $(sha256sum %s)\n'
                 '[ "$1" = %s ] || { echo "checksum mismatch: $1" >&2; rm -f %s; exit 1; }\n'
                 'chmod %o %s && mv -f %s %s' % (part, digest, part, mode, part, part, qpath))
        return len(data)

    def insmod_file(self, path, params=''):
        """Load the module file ``path`` in the guest, with ``params`` (``'a=1 b=2'``).

        Returns what insmod printed; raises :class:`GuestCommandError` if the kernel
        refused the module (insmod's stderr says why).
        """
        args = ' '.join(shlex.quote(p) for p in shlex.split(params))
        return self.run('insmod %s %s' % (shlex.quote(str(path)), args), timeout=60)


def main(argv=None):
    """Boot a guest, print where its parts are, and run typed lines in it until EOF/Ctrl-C."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--flavour', default='amd64', choices=testbed_assets.FLAVOURS)
    parser.add_argument('--memory', type=int, default=256, help='guest RAM in MiB')
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with Guest(flavour=args.flavour, memory_mb=args.memory) as guest:
        print(json.dumps({
            'release': guest.release, 'vmlinuz': str(guest.vmlinuz),
            'ram_path': str(guest.ram_path), 'memory_mb': guest.memory_mb,
            'qmp_path': str(guest.qmp_path), 'debugcon_path': str(guest.debugcon_path),
            'boot_seconds': round(guest.boot_seconds, 2),
        }, indent=2), flush=True)
        try:
            if not sys.stdin.isatty():
                print('stdin is not a terminal: waiting for Ctrl-C or SIGTERM', flush=True)
                threading.Event().wait()
            while True:
                try:
                    line = input('guest# ')
                except EOFError:
                    break
                if line.strip():
                    result = guest.run_status(line, timeout=60)
                    sys.stdout.write(result.stdout)
                    sys.stderr.write(result.stderr)
                    if result.status:
                        print('[exit status %d]' % result.status)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == '__main__':
    sys.exit(main())
