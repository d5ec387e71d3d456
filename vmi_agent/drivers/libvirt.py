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

"""libvirt guests of the ``qemu`` driver: domains with file-backed shared memory.

With Nova's ``[libvirt] file_backed_memory`` every instance's domain XML has
``<memoryBacking><source type='file'/><access mode='shared'/></memoryBacking>`` and QEMU
keeps its RAM in a file under libvirt's ``memory_backing_dir``, which the agent maps like a
test-bed guest's.  The domain UUID is the Nova instance UUID.  libvirt does not say where
the file is, QEMU does: :meth:`LibvirtGuests.ram_path` asks it over the monitor libvirt
holds (``query-memdev`` for the memory backends, ``qom-get`` for their ``mem-path``).
Pause and resume go through libvirt (``suspend``/``resume``), so that libvirt's view of
the domain stays true.

The libvirt binding is imported only when ``[qemu] libvirt_uri`` is set.
"""

import json
import logging
import os
import threading
from xml.etree import ElementTree

from vmi_agent.drivers import base
from vmi_agent.drivers import qemu

LOG = logging.getLogger(__name__)

#: libvirt's virErrorNumber for "no domain with matching uuid/name".
VIR_ERR_NO_DOMAIN = 42
_FILE_BACKEND = 'child<memory-backend-file>'


def import_bindings():
    """``(libvirt, libvirt_qemu)``: the binding's modules, or DriverError if missing."""
    try:
        import libvirt
        import libvirt_qemu
    except ImportError as exc:
        raise base.DriverError('libvirt_uri is set but the libvirt Python binding is not '
                               'installed (%s)' % exc) from exc
    return libvirt, libvirt_qemu


def machine_family(machine):
    """``q35`` or ``pc`` for a libvirt machine type (``pc-q35-7.2``, ``pc-i440fx-7.2``)."""
    if machine is None:
        return None
    if 'q35' in machine:
        return 'q35'
    if machine == 'pc' or 'i440fx' in machine:
        return 'pc'
    return None


def guest_info(instance_uuid, name, xml, debugcon_dir=None):
    """``(GuestInfo, None)`` for a domain the driver can read, else ``(None, why not)``."""
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as exc:
        return None, 'its XML does not parse: %s' % exc
    backing = root.find('memoryBacking')
    if backing is None or backing.find("source[@type='file']") is None:
        return None, 'its memory is not file-backed (no <memoryBacking><source type="file"/>)'
    if backing.find("access[@mode='shared']") is None:
        return None, 'its memory is not shared (no <memoryBacking><access mode="shared"/>)'
    os_type = root.find('os/type')
    machine = machine_family(os_type.get('machine') if os_type is not None else None)
    if machine is None:
        return None, 'its machine type is not q35 or pc'
    triggers = ()
    if debugcon_dir:
        socket_path = os.path.join(debugcon_dir, '%s.sock' % instance_uuid)
        if os.path.exists(socket_path):
            triggers = (('debugcon', socket_path),)
    return base.GuestInfo(uuid=instance_uuid, name=name, triggers=triggers,
                          location=('libvirt', instance_uuid, machine)), None


class LibvirtGuests:
    """The libvirt half of the qemu driver: one connection, shared by its handles."""

    def __init__(self, uri, debugcon_dir=None, qmp_timeout=5.0):
        self.uri = uri
        self.debugcon_dir = debugcon_dir
        self.qmp_timeout = qmp_timeout
        self._libvirt, self._libvirt_qemu = import_bindings()
        self._conn = None
        self._lock = threading.Lock()

    def _connection(self):
        with self._lock:
            if self._conn is not None and not self._alive(self._conn):
                self._conn = None
            if self._conn is None:
                try:
                    self._conn = self._libvirt.open(self.uri)
                except self._libvirt.libvirtError as exc:
                    raise base.DriverError('cannot connect to libvirt at %s: %s'
                                           % (self.uri, exc)) from exc
            return self._conn

    def _alive(self, conn):
        try:
            return bool(conn.isAlive())
        except self._libvirt.libvirtError:
            return False

    def list_guests(self):
        """GuestInfo of every running domain with file-backed shared memory."""
        try:
            domains = self._connection().listAllDomains(
                self._libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
        except self._libvirt.libvirtError as exc:
            raise base.DriverError('libvirt at %s cannot list domains: %s'
                                   % (self.uri, exc)) from exc
        infos = []
        for dom in domains:
            try:
                instance_uuid, name, xml = dom.UUIDString(), dom.name(), dom.XMLDesc(0)
            except self._libvirt.libvirtError as exc:
                LOG.debug('skipping a libvirt domain that went away while listed: %s', exc)
                continue
            info, why_not = guest_info(instance_uuid, name, xml, self.debugcon_dir)
            if info is None:
                LOG.debug('skipping libvirt domain %s (%s): %s', name, instance_uuid, why_not)
            else:
                infos.append(info)
        return infos

    def _domain(self, instance_uuid):
        try:
            dom = self._connection().lookupByUUIDString(instance_uuid)
            active = dom.isActive()
        except self._libvirt.libvirtError as exc:
            raise self._error(exc, instance_uuid, 'look up') from exc
        if not active:
            raise base.GuestVanished('libvirt domain %s is not running' % instance_uuid)
        return dom

    def _error(self, exc, instance_uuid, doing):
        """The driver error for a libvirtError met while ``doing`` something to a domain."""
        if exc.get_error_code() == VIR_ERR_NO_DOMAIN:
            return base.GuestVanished('libvirt domain %s is gone: %s' % (instance_uuid, exc))
        return base.DriverError('libvirt cannot %s domain %s: %s' % (doing, instance_uuid, exc))

    def monitor(self, dom, instance_uuid, command, arguments=None):
        """Run a QMP command on the domain's QEMU through libvirt; its ``return`` value."""
        message = {'execute': command}
        if arguments:
            message['arguments'] = arguments
        try:
            answer = self._libvirt_qemu.qemuMonitorCommand(dom, json.dumps(message), 0)
        except self._libvirt.libvirtError as exc:
            raise self._error(exc, instance_uuid, 'send %s to' % command) from exc
        try:
            reply = json.loads(answer)
        except (TypeError, ValueError) as exc:
            raise base.DriverError('QEMU of domain %s answered %s with something not JSON: '
                                   '%r' % (instance_uuid, command, str(answer)[:200])) from exc
        if not isinstance(reply, dict) or 'return' not in reply:
            error = reply.get('error') if isinstance(reply, dict) else None
            raise base.DriverError('QMP %s %s on domain %s failed: %s'
                                   % (command, json.dumps(arguments or {}), instance_uuid,
                                      error if error is not None else str(answer)[:200]))
        return reply['return']

    def ram_path(self, dom, instance_uuid):
        """The file behind the domain's RAM, as QEMU's memory backend names it."""
        paths = []
        for object_id in self._backend_ids(dom, instance_uuid):
            try:
                path = self.monitor(dom, instance_uuid, 'qom-get',
                                    {'path': '/objects/%s' % object_id,
                                     'property': 'mem-path'})
            except base.GuestVanished:
                raise
            except base.DriverError:
                continue                # a backend without a file (memfd, ram)
            if isinstance(path, str) and path:
                paths.append(path)
        if len(paths) != 1:
            raise base.DriverError('domain %s has %d file memory backends (%s); the agent '
                                   'reads guests whose RAM is one file (no NUMA cells, '
                                   'no memory hot-plug)'
                                   % (instance_uuid, len(paths), ', '.join(paths)))
        if os.path.isdir(paths[0]):
            raise base.DriverError('QEMU of domain %s keeps RAM in an unnamed file in %s, '
                                   'which the agent cannot open' % (instance_uuid, paths[0]))
        return paths[0]

    def _backend_ids(self, dom, instance_uuid):
        """The ids of the domain's shared memory backends: ``query-memdev``, else ``qom-list``."""
        memdevs = self.monitor(dom, instance_uuid, 'query-memdev')
        named = [m for m in memdevs if isinstance(m, dict) and isinstance(m.get('id'), str)]
        if named:
            # A private mapping (share=off; QEMU >= 6.1 says so) keeps guest writes out
            # of the file.
            return [m['id'] for m in named if m.get('share') is not False]
        children = self.monitor(dom, instance_uuid, 'qom-list', {'path': '/objects'})
        return [c['name'] for c in children
                if isinstance(c, dict) and c.get('type') == _FILE_BACKEND
                and isinstance(c.get('name'), str)]

    def open(self, info):
        _, instance_uuid, machine = info.location
        dom = self._domain(instance_uuid)
        path = self.ram_path(dom, instance_uuid)
        memory, identity = qemu.map_ram_file(path, machine, instance_uuid)
        return LibvirtGuestHandle(info, memory, identity, path, dom, self)

    def close(self):
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.close()
                except self._libvirt.libvirtError as exc:
                    LOG.debug('closing the libvirt connection: %s', exc)
                self._conn = None


class LibvirtGuestHandle(base.GuestHandle):
    """A libvirt domain: its mapped RAM file; pause and resume through libvirt."""

    def __init__(self, info, memory, identity, ram_path, dom, guests):
        super().__init__(info, memory)
        self.ram_path = ram_path
        self._identity = identity
        self._dom = dom
        self._guests = guests
        self._resume_after = False

    def _call(self, doing, method, *args):
        try:
            return method(*args)
        except self._guests._libvirt.libvirtError as exc:
            raise self._guests._error(exc, self.info.uuid, doing) from exc

    def _stop(self):
        # A domain someone else paused stays paused after the run.
        state = self._call('query the state of', self._dom.state, 0)[0]
        self._resume_after = state == self._guests._libvirt.VIR_DOMAIN_RUNNING
        if self._resume_after:
            self._call('suspend', self._dom.suspend)

    def _resume(self):
        if self._resume_after:
            self._resume_after = False
            self._call('resume', self._dom.resume)

    def check_alive(self):
        """GuestVanished if the RAM file went or changed, or the domain stopped."""
        qemu.check_same_file(self.ram_path, self._identity, self.info.uuid)
        if not self._call('query', self._dom.isActive):
            raise base.GuestVanished('libvirt domain %s is not running any more'
                                     % self.info.uuid)
