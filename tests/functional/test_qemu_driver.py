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

"""The ``qemu`` driver finds, reads, pauses and loses a live test-bed guest.

The guest runs under real QEMU (``tools/testbed``) and is described to the driver the way
an operator's QEMU would be: a descriptor file in ``[qemu] guest_dir`` naming its RAM file
and a QMP socket reserved for the agent.  The libvirt half's search for the RAM file is
run against the same QEMU, libvirt's monitor pass-through being the one stand-in.
"""

import json
import sys
import types

import pytest
from oslo_config import cfg

from tools.testbed.guest import Guest
from vmi_agent.conf import qemu as qemu_conf
from vmi_agent.drivers import base
from vmi_agent.drivers.libvirt import LibvirtGuests
from vmi_agent.drivers.qemu import QemuDriver
from vmi_agent.drivers.qmp import QMPCommandError


def _driver(guest_dir):
    conf = cfg.ConfigOpts()
    qemu_conf.register_opts(conf)
    conf([])
    conf.set_override('guest_dir', str(guest_dir), group='qemu')
    return QemuDriver(conf)


@pytest.fixture
def driver(tmp_path):
    driver = _driver(tmp_path)
    yield driver
    driver.close()


def _listed(driver, guest):
    found = {info.uuid: info for info in driver.list_guests()}
    assert guest.uuid in found, 'expected guest %s among %s' % (guest.uuid, list(found))
    return found[guest.uuid]


def test_driver_lists_the_guest_from_its_descriptor(guest, driver, tmp_path):
    guest.write_descriptor(tmp_path)
    info = _listed(driver, guest)
    assert info.name == guest.descriptor()['name']
    assert info.trigger_address('debugcon') == str(guest.debugcon_path), \
        'expected the debugcon trigger at the guest debug-port socket'


def test_opened_guest_memory_is_the_guest_ram(guest, driver, tmp_path):
    guest.write_descriptor(tmp_path)
    handle = driver.open(_listed(driver, guest))
    try:
        assert handle.memory.size == guest.memory_mb << 20, 'expected all guest RAM mapped'
        assert handle.memory.read(0x1000, 64) == guest.read(0x1000, 64), \
            'expected the mapping to show the bytes of the RAM file'
        handle.check_alive()
    finally:
        handle.close()


def test_pause_stops_the_guest_and_resumes_it(guest, driver, tmp_path):
    guest.write_descriptor(tmp_path)
    handle = driver.open(_listed(driver, guest))
    try:
        assert guest.running(), 'expected the guest running before the pause'
        with handle.pause() as pause:
            assert not guest.running(), 'expected the guest stopped inside pause()'
        assert guest.running(), 'expected the guest running again after pause()'
        assert pause.seconds > 0, 'expected the pause to have lasted'
        handle.check_alive()
        with handle.pause():                    # the same QMP connection, again
            assert not guest.running(), 'expected the second pause to stop the guest too'
        assert guest.running(), 'expected the guest running after the second pause'
    finally:
        handle.close()


def test_pause_leaves_a_guest_paused_by_someone_else_paused(guest, driver, tmp_path):
    guest.write_descriptor(tmp_path)
    handle = driver.open(_listed(driver, guest))
    guest.pause()
    try:
        with handle.pause():
            assert not guest.running()
        assert not guest.running(), 'expected the operator\'s pause to be kept'
    finally:
        guest.resume()
        handle.close()


def test_killed_guest_is_reported_vanished(driver, tmp_path):
    with Guest(flavour='cloud-amd64', memory_mb=128) as doomed:
        doomed.write_descriptor(tmp_path)
        handle = driver.open(_listed(driver, doomed))
        try:
            handle.check_alive()
            doomed.kill()
            with pytest.raises(base.GuestVanished):
                handle.check_alive()
        finally:
            handle.close()
        with pytest.raises(base.GuestVanished):
            driver.open(_listed(driver, doomed))


def _monitor_pass_through(guest):
    """Stands in for ``libvirt_qemu`` (libvirtd cannot run here): QMP text to real QEMU."""
    def qemu_monitor_command(dom, text, flags):
        request = json.loads(text)
        try:
            answer = guest.qmp.execute(request['execute'], request.get('arguments'))
        except QMPCommandError as exc:
            return json.dumps({'error': {'class': exc.error_class, 'desc': exc.desc}})
        return json.dumps({'return': answer})
    module = types.ModuleType('libvirt_qemu')
    module.qemuMonitorCommand = qemu_monitor_command
    return module


def test_libvirt_half_finds_the_ram_file_through_qemu_monitor(guest, monkeypatch):
    libvirt = types.ModuleType('libvirt')
    libvirt.libvirtError = type('libvirtError', (Exception,), {})
    monkeypatch.setitem(sys.modules, 'libvirt', libvirt)
    monkeypatch.setitem(sys.modules, 'libvirt_qemu', _monitor_pass_through(guest))
    guests = LibvirtGuests('qemu:///system')
    assert guests.ram_path(object(), guest.uuid) == str(guest.ram_path), \
        'expected query-memdev and qom-get mem-path to name the RAM file'
