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

"""The qemu driver's plain-QEMU half: guest descriptors, opening, pausing, vanishing.

QEMU's QMP monitor is the boundary that cannot run here: :mod:`fakeqmp` stands in for it
on a real unix socket; the RAM file is a small file in ``tmp_path``.
"""

import json
import logging
import os
import uuid

from oslo_config import cfg
import pytest

from tests.unit.drivers.fakeqmp import FakeQMPServer
from vmi_agent.conf import qemu as qemu_conf
from vmi_agent.drivers import base
from vmi_agent.drivers import qemu

UUID = '6f1c2d4e-8a9b-4c3d-9e8f-0a1b2c3d4e5f'
RAM_BYTES = 64 * 1024


def _conf(guest_dir, **overrides):
    conf = cfg.ConfigOpts()
    qemu_conf.register_opts(conf)
    conf([])
    conf.set_override('guest_dir', str(guest_dir), group='qemu')
    for name, value in overrides.items():
        conf.set_override(name, value, group='qemu')
    return conf


def _descriptor(tmp_path, **changes):
    doc = {'uuid': UUID, 'name': 'instance-00000001', 'ram_path': str(tmp_path / 'ram'),
           'qmp_path': str(tmp_path / 'qmp.sock'),
           'debugcon_path': str(tmp_path / 'debugcon.sock'), 'machine': 'q35'}
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not _ABSENT}


_ABSENT = object()


def _write(directory, name, doc):
    path = directory / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


@pytest.fixture
def guest_dir(tmp_path):
    directory = tmp_path / 'guests'
    directory.mkdir()
    return directory


@pytest.fixture
def ram_file(tmp_path):
    path = tmp_path / 'ram'
    path.write_bytes(bytes(range(256)) * (RAM_BYTES // 256))
    return path


@pytest.fixture
def qmp_server(tmp_path):
    server = FakeQMPServer(tmp_path / 'qmp.sock')
    yield server
    server.stop()


@pytest.fixture
def driver(tmp_path, guest_dir):
    driver = qemu.QemuDriver(_conf(guest_dir))
    yield driver
    driver.close()


# -- descriptors -----------------------------------------------------------------------------

def test_descriptor_gives_uuid_name_trigger_and_location(tmp_path, guest_dir):
    path = _write(guest_dir, 'a.json', _descriptor(tmp_path, uuid=UUID.upper(), machine='pc'))
    info = qemu.read_descriptor(path)
    assert info.uuid == UUID, 'expected the UUID in canonical lower-case form'
    assert info.name == 'instance-00000001'
    assert info.triggers == (('debugcon', str(tmp_path / 'debugcon.sock')),)
    assert info.location == ('qemu', str(tmp_path / 'ram'), str(tmp_path / 'qmp.sock'), 'pc')
    hash(info)


def test_descriptor_without_debugcon_or_machine_defaults(tmp_path, guest_dir):
    path = _write(guest_dir, 'a.json',
                  _descriptor(tmp_path, debugcon_path=_ABSENT, machine=_ABSENT))
    info = qemu.read_descriptor(path)
    assert info.triggers == (), 'expected no guest trigger without a debugcon socket'
    assert info.location[-1] == 'q35', 'expected q35 as the default machine'


MALFORMED = [
    ('not json', '{"uuid": ', 'not valid JSON'),
    ('not an object', '["a list"]', 'not a JSON object'),
    ('missing uuid', dict(uuid=_ABSENT), '"uuid" is missing'),
    ('missing name', dict(name=_ABSENT), '"name" is missing'),
    ('missing ram_path', dict(ram_path=_ABSENT), '"ram_path" is missing'),
    ('missing qmp_path', dict(qmp_path=_ABSENT), '"qmp_path" is missing'),
    ('bad uuid', dict(uuid='not-a-uuid'), 'not a UUID'),
    ('uuid not a string', dict(uuid=12), '"uuid" is int'),
    ('name not a string', dict(name=['x']), '"name" is list'),
    ('ram_path not a string', dict(ram_path=7), '"ram_path" is int'),
    ('qmp_path not a string', dict(qmp_path=None), '"qmp_path" is NoneType'),
    ('debugcon_path not a string', dict(debugcon_path={}), '"debugcon_path" is dict'),
    ('relative ram_path', dict(ram_path='ram'), 'expected an absolute path'),
    ('unknown machine', dict(machine='virt'), '"machine" is \'virt\''),
]


@pytest.mark.parametrize('case, change, reason', MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_descriptor_is_rejected_with_the_reason(tmp_path, guest_dir, case, change,
                                                          reason):
    doc = change if isinstance(change, str) else _descriptor(tmp_path, **change)
    path = _write(guest_dir, 'bad.json', doc)
    with pytest.raises(qemu.DescriptorError, match=reason):
        qemu.read_descriptor(path)


def test_oversized_descriptor_is_rejected(tmp_path, guest_dir):
    path = _write(guest_dir, 'big.json', ' ' * (qemu.MAX_DESCRIPTOR_BYTES + 1))
    with pytest.raises(qemu.DescriptorError, match='larger than'):
        qemu.read_descriptor(path)


def test_list_guests_skips_each_malformed_descriptor_with_one_warning(
        tmp_path, guest_dir, driver, caplog):
    _write(guest_dir, 'good.json', _descriptor(tmp_path))
    _write(guest_dir, 'broken.json', '{')
    _write(guest_dir, 'nouuid.json', _descriptor(tmp_path, uuid=_ABSENT))
    _write(guest_dir, 'ignored.txt', 'not a descriptor')
    with caplog.at_level(logging.WARNING, logger='vmi_agent.drivers.qemu'):
        guests = driver.list_guests()
    assert [g.uuid for g in guests] == [UUID], 'expected only the good descriptor listed'
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, 'expected one warning per bad descriptor: %s' % warnings
    assert any('broken.json' in w and 'JSON' in w for w in warnings), warnings
    assert any('nouuid.json' in w and '"uuid" is missing' in w for w in warnings), warnings


def test_unchanged_malformed_descriptor_is_warned_about_once(
        tmp_path, guest_dir, driver, caplog):
    path = _write(guest_dir, 'broken.json', '{')

    def warnings():
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger='vmi_agent.drivers.qemu'):
            driver.list_guests()
        assert any('broken.json' in r.getMessage() for r in caplog.records), \
            'expected every listing to log the skipped descriptor'
        return [r for r in caplog.records if r.levelno == logging.WARNING]

    assert len(warnings()) == 1, 'expected a warning the first time'
    assert warnings() == [], 'expected only a debug line while the file stays the same'
    path.write_text('[1, 2]')
    assert len(warnings()) == 1, 'expected a new warning when the file changed'


def test_list_guests_keeps_the_first_of_two_descriptors_of_one_uuid(tmp_path, guest_dir,
                                                                    driver):
    _write(guest_dir, 'a.json', _descriptor(tmp_path, name='first'))
    _write(guest_dir, 'b.json', _descriptor(tmp_path, name='second'))
    assert [g.name for g in driver.list_guests()] == ['first']


def test_missing_guest_dir_means_no_guests(tmp_path):
    driver = qemu.QemuDriver(_conf(tmp_path / 'nowhere'))
    assert driver.list_guests() == []


# -- opening and the handle --------------------------------------------------------------------

def _open(driver, tmp_path, guest_dir):
    _write(guest_dir, 'g.json', _descriptor(tmp_path))
    info, = driver.list_guests()
    return driver.open(info)


def test_open_maps_the_ram_file_and_reads_it(tmp_path, guest_dir, driver, ram_file,
                                             qmp_server):
    handle = _open(driver, tmp_path, guest_dir)
    try:
        assert handle.memory.size == RAM_BYTES
        assert handle.memory.read(0x10, 4) == bytes([0x10, 0x11, 0x12, 0x13])
        handle.check_alive()
    finally:
        handle.close()


def test_open_without_ram_file_is_vanished(tmp_path, guest_dir, driver, qmp_server):
    with pytest.raises(base.GuestVanished, match='RAM file .* is gone'):
        _open(driver, tmp_path, guest_dir)


def test_open_with_qmp_refused_is_vanished(tmp_path, guest_dir, driver, ram_file):
    import socket
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(tmp_path / 'qmp.sock'))        # a socket file nobody listens on
    dead.close()
    with pytest.raises(base.GuestVanished, match='does not answer'):
        _open(driver, tmp_path, guest_dir)


def test_open_of_a_foreign_guest_is_not_found(driver):
    with pytest.raises(base.GuestNotFound):
        driver.open(base.GuestInfo(uuid=UUID, location=('/dumps/x.raw', 'raw', 'q35')))


def test_pause_stops_and_resumes_over_one_connection(tmp_path, guest_dir, driver, ram_file,
                                                     qmp_server):
    handle = _open(driver, tmp_path, guest_dir)
    try:
        with handle.pause() as pause:
            assert not qmp_server.running, 'expected the guest stopped inside pause()'
        assert qmp_server.running, 'expected the guest resumed after pause()'
        assert pause.seconds > 0
        assert qmp_server.commands == ['qmp_capabilities', 'query-status', 'stop', 'cont']
        assert qmp_server.connections == 1, 'expected the connection kept from open()'
    finally:
        handle.close()


def test_pause_leaves_an_already_paused_guest_paused(tmp_path, guest_dir, driver, ram_file,
                                                     qmp_server):
    qmp_server.running = False
    handle = _open(driver, tmp_path, guest_dir)
    try:
        with handle.pause():
            pass
        assert not qmp_server.running, 'expected the guest left paused as it was found'
        assert 'cont' not in qmp_server.commands
    finally:
        handle.close()


def test_pause_reconnects_once_when_the_connection_broke(tmp_path, guest_dir, driver,
                                                         ram_file, qmp_server):
    handle = _open(driver, tmp_path, guest_dir)
    try:
        qmp_server.drop_client()
        with handle.pause():
            assert not qmp_server.running
        assert qmp_server.running
        assert qmp_server.connections == 2, 'expected one reconnection'
    finally:
        handle.close()


def test_check_alive_sees_the_ram_file_removed(tmp_path, guest_dir, driver, ram_file,
                                               qmp_server):
    handle = _open(driver, tmp_path, guest_dir)
    try:
        ram_file.unlink()
        with pytest.raises(base.GuestVanished, match='gone'):
            handle.check_alive()
    finally:
        handle.close()


def test_check_alive_sees_the_ram_file_replaced(tmp_path, guest_dir, driver, ram_file,
                                                qmp_server):
    handle = _open(driver, tmp_path, guest_dir)
    try:
        replacement = tmp_path / 'ram.new'
        replacement.write_bytes(bytes(RAM_BYTES))
        os.replace(replacement, ram_file)
        with pytest.raises(base.GuestVanished, match='replaced'):
            handle.check_alive()
    finally:
        handle.close()


def test_check_alive_sees_qemu_gone(tmp_path, guest_dir, driver, ram_file, qmp_server):
    handle = _open(driver, tmp_path, guest_dir)
    try:
        qmp_server.stop()
        with pytest.raises(base.GuestVanished, match='does not answer'):
            handle.check_alive()
    finally:
        handle.close()


def test_check_alive_reconnects_when_only_the_connection_dropped(
        tmp_path, guest_dir, driver, ram_file, qmp_server):
    handle = _open(driver, tmp_path, guest_dir)
    try:
        qmp_server.drop_client()
        handle.check_alive()
        assert qmp_server.connections == 2, 'expected check_alive to reconnect'
        with handle.pause():
            assert not qmp_server.running
    finally:
        handle.close()


def test_close_releases_mapping_and_connection(tmp_path, guest_dir, driver, ram_file,
                                               qmp_server):
    handle = _open(driver, tmp_path, guest_dir)
    client = handle._client
    handle.close()
    assert client.closed_by_peer(), 'expected the QMP client closed'
    handle.close()


def test_qmp_options_have_help():
    for opt in qemu_conf.opts:
        assert opt.help, 'expected help text for [qemu] %s' % opt.name
    assert uuid.UUID(UUID)
