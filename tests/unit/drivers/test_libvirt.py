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

"""The qemu driver's libvirt half: Nova instances with file-backed memory.

libvirtd cannot run here, so :class:`Recorder` stands in for the libvirt binding (the
``libvirt`` and ``libvirt_qemu`` modules, put in ``sys.modules``): it serves domains with
domain XML as libvirt reports it for instances Nova created with ``[libvirt]
file_backed_memory``, answers QMP commands as QEMU 7.2 does, and records every call.
"""

import json
import logging
import sys
import types

from oslo_config import cfg
import pytest

from vmi_agent.conf import qemu as qemu_conf
from vmi_agent.drivers import base
from vmi_agent.drivers import libvirt as libvirt_guests
from vmi_agent.drivers import qemu

UUID = 'a3f1c5e2-7b4d-4f6a-9c8e-1d2b3a4c5e6f'
PLAIN_UUID = 'b4e2d6f3-8c5e-4a7b-8d9f-2e3c4b5d6f70'
URI = 'qemu:///system'
RAM_BYTES = 64 * 1024

# What `virsh dumpxml` shows for an instance Nova booted with file_backed_memory
# (Nova writes <memoryBacking><source type="file"/><access mode="shared"/>...).
NOVA_FILE_BACKED_XML = """<domain type='kvm' id='1'>
  <name>instance-00000002</name>
  <uuid>{uuid}</uuid>
  <metadata>
    <nova:instance xmlns:nova="http://openstack.org/xmlns/libvirt/nova/1.1">
      <nova:package version="27.1.0"/>
      <nova:name>web-1</nova:name>
      <nova:flavor name="m1.small"><nova:memory>1024</nova:memory></nova:flavor>
    </nova:instance>
  </metadata>
  <memory unit='KiB'>1048576</memory>
  <currentMemory unit='KiB'>1048576</currentMemory>
  <memoryBacking>
    <source type='file'/>
    <access mode='shared'/>
    <allocation mode='immediate'/>
    <discard/>
  </memoryBacking>
  <vcpu placement='static'>1</vcpu>
  <os>
    <type arch='x86_64' machine='{machine}'>hvm</type>
    <boot dev='hd'/>
    <smbios mode='sysinfo'/>
  </os>
  <features><acpi/><apic/></features>
  <cpu mode='host-model' check='partial'><topology sockets='1' dies='1' cores='1'
    threads='1'/></cpu>
  <clock offset='utc'><timer name='pit' tickpolicy='delay'/></clock>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none'/>
      <source file='/var/lib/nova/instances/{uuid}/disk'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <serial type='pty'><target type='isa-serial' port='0'/></serial>
  </devices>
</domain>
"""

# A default Nova instance: anonymous memory, nothing to map.
NOVA_ANONYMOUS_XML = """<domain type='kvm' id='2'>
  <name>instance-00000003</name>
  <uuid>c5f3e7a4-9d6f-4b8c-9eaf-3f4d5c6e7f81</uuid>
  <memory unit='KiB'>1048576</memory>
  <vcpu placement='static'>1</vcpu>
  <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os>
  <devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices>
</domain>
"""

# File-backed but private (no <access mode='shared'/>): QEMU's writes are not in the file.
PRIVATE_FILE_XML = NOVA_FILE_BACKED_XML.replace("    <access mode='shared'/>\n", '')


class Recorder:
    """Stands in for the libvirt binding; ``calls`` records what the driver asked."""

    def __init__(self):
        self.calls = []
        self.domains = {}
        self.libvirt = types.ModuleType('libvirt')
        self.libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE = 1
        self.libvirt.VIR_DOMAIN_RUNNING = 1
        self.libvirt.VIR_DOMAIN_PAUSED = 3
        self.libvirt.libvirtError = LibvirtError
        self.libvirt.open = self.open
        self.libvirt_qemu = types.ModuleType('libvirt_qemu')
        self.libvirt_qemu.qemuMonitorCommand = self.qemu_monitor_command

    def add(self, xml, uuid=UUID, name='instance-00000002', ram_path=None, memdevs=None):
        dom = FakeDomain(self, uuid, name, xml)
        if ram_path is not None:
            dom.qmp['query-memdev'] = [{'id': 'pc.ram', 'size': RAM_BYTES, 'merge': True,
                                        'dump': True, 'prealloc': False, 'share': True,
                                        'host-nodes': [], 'policy': 'default'}]
            dom.mem_paths['/objects/pc.ram'] = str(ram_path)
        if memdevs is not None:
            dom.qmp['query-memdev'] = memdevs
        self.domains[uuid] = dom
        return dom

    def open(self, uri):
        self.calls.append(('open', uri))
        return FakeConnection(self)

    def qemu_monitor_command(self, dom, command, flags):
        request = json.loads(command)
        self.calls.append(('qemuMonitorCommand', dom.uuid, request))
        name, args = request['execute'], request.get('arguments', {})
        if name == 'qom-get':
            if args.get('property') != 'mem-path' or args['path'] not in dom.mem_paths:
                return json.dumps({'id': 'libvirt-9', 'error': {
                    'class': 'GenericError',
                    'desc': "Property '%s' not found" % args.get('property')}})
            return json.dumps({'id': 'libvirt-9', 'return': dom.mem_paths[args['path']]})
        if name not in dom.qmp:
            return json.dumps({'id': 'libvirt-9', 'error': {
                'class': 'CommandNotFound', 'desc': "The command %s has not been found"
                % name}})
        return json.dumps({'id': 'libvirt-9', 'return': dom.qmp[name]})


class LibvirtError(Exception):
    """Like libvirt.libvirtError: carries a virErrorNumber."""

    def __init__(self, message, code=1):
        super().__init__(message)
        self.code = code

    def get_error_code(self):
        return self.code


class FakeConnection:

    def __init__(self, recorder):
        self.recorder = recorder

    def isAlive(self):
        return True

    def listAllDomains(self, flags):
        self.recorder.calls.append(('listAllDomains', flags))
        return [d for d in self.recorder.domains.values() if d.active]

    def lookupByUUIDString(self, uuid):
        self.recorder.calls.append(('lookupByUUIDString', uuid))
        if uuid not in self.recorder.domains:
            raise LibvirtError('Domain not found: no domain with matching uuid',
                               libvirt_guests.VIR_ERR_NO_DOMAIN)
        return self.recorder.domains[uuid]

    def close(self):
        self.recorder.calls.append(('close',))


class FakeDomain:

    def __init__(self, recorder, uuid, name, xml):
        self.recorder, self.uuid, self._name, self.xml = recorder, uuid, name, xml
        self.active = True
        self.running = True
        self.qmp = {}
        self.mem_paths = {}

    def UUIDString(self):
        return self.uuid

    def name(self):
        return self._name

    def XMLDesc(self, flags):
        return self.xml

    def isActive(self):
        return int(self.active)

    def state(self, flags):
        return [1 if self.running else 3, 1]

    def suspend(self):
        self.recorder.calls.append(('suspend', self.uuid))
        self.running = False

    def resume(self):
        self.recorder.calls.append(('resume', self.uuid))
        self.running = True


@pytest.fixture
def recorder(monkeypatch):
    recorder = Recorder()
    monkeypatch.setitem(sys.modules, 'libvirt', recorder.libvirt)
    monkeypatch.setitem(sys.modules, 'libvirt_qemu', recorder.libvirt_qemu)
    return recorder


@pytest.fixture
def ram_file(tmp_path):
    path = tmp_path / 'pc.ram'
    path.write_bytes(b'\x5a' * RAM_BYTES)
    return path


def _driver(tmp_path, **overrides):
    conf = cfg.ConfigOpts()
    qemu_conf.register_opts(conf)
    conf([])
    conf.set_override('guest_dir', str(tmp_path / 'guests'), group='qemu')
    conf.set_override('libvirt_uri', URI, group='qemu')
    for name, value in overrides.items():
        conf.set_override(name, value, group='qemu')
    return qemu.QemuDriver(conf)


def _xml(machine='pc-q35-7.2', template=NOVA_FILE_BACKED_XML):
    return template.format(uuid=UUID, machine=machine)


def test_file_backed_domain_is_listed_with_nova_uuid_and_domain_name(tmp_path, recorder):
    recorder.add(_xml())
    info, = _driver(tmp_path).list_guests()
    assert (info.uuid, info.name, info.triggers) == (UUID, 'instance-00000002', ())
    assert info.location == ('libvirt', UUID, 'q35')
    assert ('open', URI) in recorder.calls
    assert ('listAllDomains', recorder.libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE) in \
        recorder.calls, 'expected only active domains asked for'


def test_pc_machine_type_is_recognised(tmp_path, recorder):
    recorder.add(_xml('pc-i440fx-7.2'))
    info, = _driver(tmp_path).list_guests()
    assert info.location[-1] == 'pc'


@pytest.mark.parametrize('xml, why', [
    (NOVA_ANONYMOUS_XML, 'not file-backed'),
    (PRIVATE_FILE_XML.format(uuid=UUID, machine='pc-q35-7.2'), 'not shared'),
    (NOVA_FILE_BACKED_XML.format(uuid=UUID, machine='virt-7.2'), 'machine type'),
    ('<domain', 'does not parse'),
], ids=['anonymous memory', 'private file', 'arm virt machine', 'broken xml'])
def test_other_domains_are_skipped_with_the_reason(tmp_path, recorder, caplog, xml, why):
    recorder.add(xml)
    with caplog.at_level(logging.DEBUG, logger='vmi_agent.drivers.libvirt'):
        assert _driver(tmp_path).list_guests() == []
    assert any(why in r.getMessage() and r.levelno == logging.DEBUG for r in caplog.records), \
        'expected a debug line saying %r' % why


def test_debugcon_socket_in_the_directory_gives_a_trigger(tmp_path, recorder):
    recorder.add(_xml())
    (tmp_path / (UUID + '.sock')).touch()
    info, = _driver(tmp_path, libvirt_debugcon_dir=str(tmp_path)).list_guests()
    assert info.triggers == (('debugcon', str(tmp_path / (UUID + '.sock'))),)


def test_descriptor_and_libvirt_guests_are_both_listed(tmp_path, recorder):
    recorder.add(_xml())
    (tmp_path / 'guests').mkdir()
    (tmp_path / 'guests' / 'plain.json').write_text(json.dumps({
        'uuid': PLAIN_UUID, 'name': 'plain', 'ram_path': '/dev/shm/r',
        'qmp_path': '/run/q.sock'}))
    found = {info.uuid: info.location[0] for info in _driver(tmp_path).list_guests()}
    assert found == {UUID: 'libvirt', PLAIN_UUID: 'qemu'}


def test_open_finds_the_ram_file_through_qmp_and_maps_it(tmp_path, recorder, ram_file):
    recorder.add(_xml(), ram_path=ram_file)
    driver = _driver(tmp_path)
    handle = driver.open(driver.list_guests()[0])
    try:
        assert handle.memory.read(0, 4) == b'\x5a' * 4
        assert handle.memory.size == RAM_BYTES
        sent = [c[2] for c in recorder.calls if c[0] == 'qemuMonitorCommand']
        assert sent == [{'execute': 'query-memdev'},
                        {'execute': 'qom-get', 'arguments': {'path': '/objects/pc.ram',
                                                             'property': 'mem-path'}}]
        handle.check_alive()
    finally:
        handle.close()
    driver.close()
    assert recorder.calls[-1] == ('close',), 'expected the libvirt connection closed'


def test_backends_without_ids_are_found_with_qom_list(tmp_path, recorder, ram_file):
    dom = recorder.add(_xml(), memdevs=[{'size': RAM_BYTES, 'merge': True}])
    dom.qmp['qom-list'] = [{'name': 'pc.ram', 'type': 'child<memory-backend-file>'},
                           {'name': 'rng0', 'type': 'child<rng-random>'}]
    dom.mem_paths['/objects/pc.ram'] = str(ram_file)
    driver = _driver(tmp_path)
    handle = driver.open(driver.list_guests()[0])
    handle.close()
    assert handle.ram_path == str(ram_file)


def test_guest_with_ram_in_several_files_is_refused(tmp_path, recorder, ram_file):
    dom = recorder.add(_xml(), memdevs=[{'id': 'ram-node0'}, {'id': 'ram-node1'}])
    dom.mem_paths.update({'/objects/ram-node0': str(ram_file),
                          '/objects/ram-node1': str(ram_file) + '1'})
    driver = _driver(tmp_path)
    with pytest.raises(base.DriverError, match='2 file memory backends'):
        driver.open(driver.list_guests()[0])


def test_private_backend_is_not_mapped(tmp_path, recorder, ram_file):
    dom = recorder.add(_xml(), ram_path=ram_file)
    dom.qmp['query-memdev'][0]['share'] = False
    driver = _driver(tmp_path)
    with pytest.raises(base.DriverError, match='0 file memory backends'):
        driver.open(driver.list_guests()[0])


def test_pause_suspends_and_resumes_the_domain(tmp_path, recorder, ram_file):
    dom = recorder.add(_xml(), ram_path=ram_file)
    driver = _driver(tmp_path)
    handle = driver.open(driver.list_guests()[0])
    try:
        with handle.pause() as pause:
            assert not dom.running, 'expected the domain suspended inside pause()'
        assert dom.running, 'expected the domain resumed'
        assert pause.seconds > 0
        dom.running = False                 # an operator paused it
        with handle.pause():
            pass
        assert not dom.running, 'expected an already paused domain left paused'
        assert [c[0] for c in recorder.calls if c[0] in ('suspend', 'resume')] == \
            ['suspend', 'resume']
    finally:
        handle.close()


def test_stopped_domain_is_vanished(tmp_path, recorder, ram_file):
    dom = recorder.add(_xml(), ram_path=ram_file)
    driver = _driver(tmp_path)
    info = driver.list_guests()[0]
    handle = driver.open(info)
    try:
        dom.active = False
        with pytest.raises(base.GuestVanished, match='not running'):
            handle.check_alive()
    finally:
        handle.close()
    with pytest.raises(base.GuestVanished):
        driver.open(info)


def test_undefined_domain_is_vanished(tmp_path, recorder, ram_file):
    recorder.add(_xml(), ram_path=ram_file)
    driver = _driver(tmp_path)
    info = driver.list_guests()[0]
    del recorder.domains[UUID]
    with pytest.raises(base.GuestVanished, match='gone'):
        driver.open(info)


def test_removed_ram_file_is_vanished(tmp_path, recorder, ram_file):
    recorder.add(_xml(), ram_path=ram_file)
    driver = _driver(tmp_path)
    handle = driver.open(driver.list_guests()[0])
    try:
        ram_file.unlink()
        with pytest.raises(base.GuestVanished):
            handle.check_alive()
    finally:
        handle.close()


def test_missing_binding_is_a_clear_driver_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, 'libvirt', None)
    with pytest.raises(base.DriverError, match='libvirt_uri is set but the libvirt Python '
                                               'binding is not installed'):
        _driver(tmp_path)


def test_without_libvirt_uri_libvirt_is_not_imported(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, 'libvirt', None)
    driver = _driver(tmp_path, libvirt_uri=None)
    assert driver.list_guests() == []
