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

"""The ``qemu`` driver: live guests whose RAM QEMU keeps in a shared file.

A compute host running QEMU (the test bed, an operator's own QEMU, or libvirt/KVM with
Nova's ``[libvirt] file_backed_memory``) keeps each guest's RAM in a file that the agent
can map read-only: introspection needs no copy and no help from the guest.  The driver
finds such guests in two places, both optional:

- guest descriptors, ``*.json`` files in ``[qemu] guest_dir`` (see :func:`read_descriptor`),
  each naming the RAM file and a QMP socket reserved for the agent;
- libvirt (``[qemu] libvirt_uri``): running domains with file-backed shared memory, see
  :mod:`vmi_agent.drivers.libvirt`.

A handle maps the RAM file, remembers which file it mapped (device and inode: a restarted
guest gets a new file) and pauses the guest through QMP (or libvirt) around a run.
"""

import json
import logging
import os
import uuid

from vmi_agent.conf import qemu as qemu_conf
from vmi_agent.drivers import base
from vmi_agent.drivers import qmp
from vmi_agent.engine.errors import MemoryFormatError
from vmi_agent.engine.memory import open_memory

LOG = logging.getLogger(__name__)

MACHINES = ('q35', 'pc')
#: A descriptor is a few hundred bytes; anything much bigger is not one.
MAX_DESCRIPTOR_BYTES = 64 * 1024
_REQUIRED_PATHS = ('ram_path', 'qmp_path')


class DescriptorError(ValueError):
    """A guest descriptor is malformed; the message says what is wrong with it."""


def read_descriptor(path):
    """The :class:`base.GuestInfo` a descriptor file describes; DescriptorError if malformed.

    The file is a JSON object: ``uuid`` (the Nova instance UUID), ``name``, ``ram_path``
    (the file behind ``memory-backend-file,share=on``), ``qmp_path`` (a QMP socket for the
    agent alone), optional ``debugcon_path`` (the debug-port socket the guest trigger
    writes to) and optional ``machine`` (``q35``, the default, or ``pc``).  Paths must be
    absolute.
    """
    try:
        with open(path, 'rb') as f:
            raw = f.read(MAX_DESCRIPTOR_BYTES + 1)
    except OSError as exc:
        raise DescriptorError('cannot read it: %s' % (exc.strerror or exc)) from exc
    if len(raw) > MAX_DESCRIPTOR_BYTES:
        raise DescriptorError('it is larger than %d bytes' % MAX_DESCRIPTOR_BYTES)
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise DescriptorError('it is not valid JSON: %s' % exc) from exc
    if not isinstance(doc, dict):
        raise DescriptorError('it is not a JSON object')
    return _descriptor_info(doc)


def _descriptor_info(doc):
    instance_uuid = _canonical_uuid(_required(doc, 'uuid', str))
    name = _required(doc, 'name', str)
    ram_path, qmp_path = (_absolute_path(doc, key, _required(doc, key, str))
                          for key in _REQUIRED_PATHS)
    debugcon_path = doc.get('debugcon_path')
    if debugcon_path is not None:
        debugcon_path = _absolute_path(doc, 'debugcon_path', debugcon_path)
    machine = doc.get('machine', 'q35')
    if machine not in MACHINES:
        raise DescriptorError('"machine" is %r, expected one of %s'
                              % (machine, ', '.join(MACHINES)))
    triggers = (('debugcon', debugcon_path),) if debugcon_path else ()
    return base.GuestInfo(uuid=instance_uuid, name=name, triggers=triggers,
                          location=('qemu', ram_path, qmp_path, machine))


def _required(doc, key, kind):
    if key not in doc:
        raise DescriptorError('"%s" is missing' % key)
    value = doc[key]
    if not isinstance(value, kind):
        raise DescriptorError('"%s" is %s, expected a %s'
                              % (key, type(value).__name__, kind.__name__))
    return value


def _absolute_path(doc, key, value):
    if not isinstance(value, str):
        raise DescriptorError('"%s" is %s, expected a string' % (key, type(value).__name__))
    if not value.startswith('/') or '\0' in value:
        raise DescriptorError('"%s" is %r, expected an absolute path' % (key, value[:200]))
    return value


def _canonical_uuid(value):
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise DescriptorError('"uuid" is %r, not a UUID' % value[:100]) from None


def file_identity(path, instance_uuid, what='RAM file'):
    """``(st_dev, st_ino)`` of ``path``; GuestVanished if it is gone, DriverError otherwise."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise base.GuestVanished('%s %s of guest %s is gone'
                                 % (what, path, instance_uuid)) from None
    except OSError as exc:
        raise base.DriverError('cannot stat %s %s of guest %s: %s'
                               % (what, path, instance_uuid, exc.strerror or exc)) from exc
    return (st.st_dev, st.st_ino)


def check_same_file(path, identity, instance_uuid):
    """GuestVanished unless ``path`` is still the file whose identity was recorded."""
    if file_identity(path, instance_uuid) != identity:
        raise base.GuestVanished('RAM file %s of guest %s was replaced (the guest restarted?)'
                                 % (path, instance_uuid))


def map_ram_file(path, machine, instance_uuid):
    """``(memory, identity)`` for a guest's RAM file, its identity checked around the open."""
    identity = file_identity(path, instance_uuid)
    try:
        memory = open_memory(path, 'raw', machine)
    except (MemoryFormatError, OSError) as exc:
        file_identity(path, instance_uuid)      # GuestVanished if it went meanwhile
        raise base.DriverError('cannot map RAM file of guest %s: %s'
                               % (instance_uuid, exc)) from exc
    try:
        check_same_file(path, identity, instance_uuid)
    except BaseException:
        memory.close()
        raise
    return memory, identity


def connect_qmp(path, timeout, instance_uuid):
    """A QMPClient on ``path``; GuestVanished if QEMU is gone, DriverError otherwise."""
    try:
        return qmp.QMPClient(path, timeout=timeout)
    except qmp.QMPConnectionError as exc:
        if isinstance(exc.__cause__, (FileNotFoundError, ConnectionRefusedError)):
            raise base.GuestVanished('QEMU of guest %s does not answer on %s (it exited?): %s'
                                     % (instance_uuid, path, exc)) from exc
        raise base.DriverError('QMP socket %s of guest %s: %s'
                               % (path, instance_uuid, exc)) from exc
    except qmp.QMPError as exc:
        raise base.DriverError('QMP socket %s of guest %s did not greet within %ss (QEMU '
                               'serves one client per QMP socket: is another one connected?)'
                               ': %s' % (path, instance_uuid, timeout, exc)) from exc


class QemuGuestHandle(base.GuestHandle):
    """A plain-QEMU guest: its mapped RAM file and a persistent QMP connection."""

    def __init__(self, info, memory, identity, client, qmp_timeout):
        super().__init__(info, memory)
        _, self.ram_path, self.qmp_path, _ = info.location
        self._identity = identity
        self._client = client
        self._qmp_timeout = qmp_timeout
        self._resume_after = False

    def _connection(self):
        if self._client is None:
            self._client = connect_qmp(self.qmp_path, self._qmp_timeout, self.info.uuid)
        return self._client

    def _drop_connection(self):
        if self._client is not None:
            self._client.close()
            self._client = None

    def execute(self, command):
        """Run a QMP command, reconnecting once if the connection broke."""
        for attempt in range(2):
            client = self._connection()
            try:
                return client.execute(command)
            except qmp.QMPConnectionError as exc:
                self._drop_connection()
                if attempt:
                    raise base.GuestVanished('QEMU of guest %s closed QMP socket %s: %s'
                                             % (self.info.uuid, self.qmp_path, exc)) from exc
            except qmp.QMPError as exc:
                raise base.DriverError('QMP %s for guest %s failed: %s'
                                       % (command, self.info.uuid, exc)) from exc

    def _stop(self):
        # A guest someone else paused stays paused after the run.
        self._resume_after = bool(self.execute('query-status').get('running'))
        if self._resume_after:
            self.execute('stop')

    def _resume(self):
        if self._resume_after:
            self._resume_after = False
            self.execute('cont')

    def check_alive(self):
        """GuestVanished if the RAM file went or changed, or QEMU closed QMP and is gone.

        Costs a stat and a non-blocking read; a round trip only when the connection broke.
        """
        check_same_file(self.ram_path, self._identity, self.info.uuid)
        if self._client is None or self._client.closed_by_peer():
            self._drop_connection()
            self._connection()

    def close(self):
        self._drop_connection()
        self.memory.close()


class QemuDriver(base.Driver):
    """Guests of plain QEMU (descriptor files) and of libvirt (file-backed memory)."""

    name = 'qemu'
    capabilities = ('live', 'pause', 'trigger:debugcon')

    def __init__(self, conf):
        super().__init__(conf)
        qemu_conf.register_opts(conf)           # idempotent; the agent registers them too
        opts = conf.qemu
        self.guest_dir = opts.guest_dir
        self.qmp_timeout = opts.qmp_timeout
        self._libvirt = None
        #: path -> (mtime, size, reason) of the malformed descriptors already warned about.
        self._warned = {}
        if opts.libvirt_uri:
            # Imported here: it imports this module's helpers.
            from vmi_agent.drivers import libvirt as libvirt_guests
            self._libvirt = libvirt_guests.LibvirtGuests(
                opts.libvirt_uri, opts.libvirt_debugcon_dir, opts.qmp_timeout)

    def list_guests(self):
        guests = {}
        sources = [self._descriptor_guests()]
        if self._libvirt is not None:
            sources.append(self._libvirt.list_guests())
        for infos in sources:
            for info in infos:
                if info.uuid in guests:
                    LOG.warning('guest %s is described twice (%s and %s); using the first',
                                info.uuid, guests[info.uuid].location, info.location)
                    continue
                guests[info.uuid] = info
        return list(guests.values())

    def _descriptor_guests(self):
        try:
            names = sorted(n for n in os.listdir(self.guest_dir) if n.endswith('.json'))
        except FileNotFoundError:
            return []
        except OSError as exc:
            LOG.warning('cannot list guest descriptors in %s: %s', self.guest_dir,
                        exc.strerror or exc)
            return []
        infos = []
        warned, self._warned = self._warned, {}
        for name in names:
            path = os.path.join(self.guest_dir, name)
            try:
                infos.append(read_descriptor(path))
            except DescriptorError as exc:
                self._skip(path, exc, warned)
        return infos

    def _skip(self, path, exc, warned):
        """Log a malformed descriptor: a warning once, debug while it stays the same."""
        try:
            st = os.stat(path)
            key = (st.st_mtime_ns, st.st_size, str(exc))
        except OSError:
            key = (None, None, str(exc))
        log = LOG.debug if warned.get(path) == key else LOG.warning
        log('skipping guest descriptor %s: %s', path, exc)
        self._warned[path] = key

    def open(self, info):
        kind = info.location[0] if info.location else None
        if kind == 'qemu':
            return self._open_qemu(info)
        if kind == 'libvirt' and self._libvirt is not None:
            return self._libvirt.open(info)
        raise base.GuestNotFound('guest %s is not a guest of the qemu driver (location %r)'
                                 % (info.uuid, info.location))

    def _open_qemu(self, info):
        _, ram_path, qmp_path, machine = info.location
        memory, identity = map_ram_file(ram_path, machine, info.uuid)
        try:
            client = connect_qmp(qmp_path, self.qmp_timeout, info.uuid)
        except BaseException:
            memory.close()
            raise
        return QemuGuestHandle(info, memory, identity, client, self.qmp_timeout)

    def close(self):
        if self._libvirt is not None:
            self._libvirt.close()
