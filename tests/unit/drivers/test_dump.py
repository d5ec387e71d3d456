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

"""The dump driver: memory images in a directory are guests, already consistent."""

import json
import logging
import os
import struct

from oslo_config import cfg
import pytest

from vmi_agent.conf import dump as dump_conf
from vmi_agent.drivers import base
from vmi_agent.drivers import dump

UUID = '0d9a3b8e-1c2f-4e5d-8a7b-6c5d4e3f2a1b'
OTHER = '9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b'
RAM_BYTES = 32 * 1024


@pytest.fixture
def image_dir(tmp_path):
    return tmp_path


@pytest.fixture
def driver(image_dir):
    conf = cfg.ConfigOpts()
    dump_conf.register_opts(conf)
    conf([])
    conf.set_override('image_dir', str(image_dir), group='dump')
    driver = dump.DumpDriver(conf)
    yield driver
    driver.close()


def _raw(image_dir, name, fill=b'\xab'):
    path = image_dir / name
    path.write_bytes(struct.pack('<Q', 0x1122334455667788) + fill * (RAM_BYTES - 8))
    return path


def _only(driver):
    guests = driver.list_guests()
    assert len(guests) == 1, 'expected exactly one guest, got %s' % guests
    return guests[0]


def test_raw_image_is_listed_and_read(image_dir, driver):
    _raw(image_dir, UUID + '.raw')
    info = _only(driver)
    assert (info.uuid, info.name, info.triggers) == (UUID, None, ())
    handle = driver.open(info)
    try:
        assert handle.memory.size == RAM_BYTES
        assert handle.memory.read(0, 8) == struct.pack('<Q', 0x1122334455667788)
        handle.check_alive()
    finally:
        handle.close()


def test_sidecar_gives_name_and_machine(image_dir, driver):
    _raw(image_dir, UUID + '.ram')
    (image_dir / (UUID + '.json')).write_text(json.dumps({'name': 'web-1', 'machine': 'pc'}))
    info = _only(driver)
    assert info.name == 'web-1'
    assert info.location == (str(image_dir / (UUID + '.ram')), 'raw', 'pc')


@pytest.mark.parametrize('sidecar', ['{', '[]', '{"machine": "virt"}', '{"name": 3}'])
def test_bad_sidecar_is_ignored_with_a_warning(image_dir, driver, caplog, sidecar):
    _raw(image_dir, UUID + '.raw')
    (image_dir / (UUID + '.json')).write_text(sidecar)
    with caplog.at_level(logging.WARNING, logger='vmi_agent.drivers.dump'):
        info = _only(driver)
    assert (info.name, info.location[2]) == (None, 'q35'), 'expected the defaults'
    assert any(UUID + '.json' in r.getMessage() for r in caplog.records), \
        'expected a warning naming the sidecar'


def test_elf_suffixes_open_as_elf_cores(image_dir, driver):
    (image_dir / (UUID + '.core')).write_bytes(b'\x7fELF' + bytes(60))
    info = _only(driver)
    assert info.location[1] == 'elf'
    with pytest.raises(base.DriverError, match='cannot open memory image'):
        driver.open(info)


def test_files_not_named_by_uuid_are_ignored(image_dir, driver, caplog):
    _raw(image_dir, 'notes.raw')
    _raw(image_dir, UUID + '.txt')
    _raw(image_dir, OTHER + '.raw')
    with caplog.at_level(logging.DEBUG, logger='vmi_agent.drivers.dump'):
        assert _only(driver).uuid == OTHER
    assert any('notes.raw' in r.getMessage() for r in caplog.records), \
        'expected a debug line about the file that is not named by a UUID'


def test_several_images_of_one_guest_give_one_guest(image_dir, driver):
    _raw(image_dir, UUID + '.elf')
    _raw(image_dir, UUID + '.raw')
    assert _only(driver).location[1] == 'raw', 'expected the raw image preferred'


def test_missing_image_dir_means_no_guests(tmp_path):
    conf = cfg.ConfigOpts()
    dump_conf.register_opts(conf)
    conf([])
    conf.set_override('image_dir', str(tmp_path / 'nowhere'), group='dump')
    assert dump.DumpDriver(conf).list_guests() == []


def test_pause_and_snapshot_do_nothing(image_dir, driver):
    _raw(image_dir, UUID + '.raw')
    handle = driver.open(_only(driver))
    try:
        with handle.pause() as pause:
            assert handle.memory.read(0, 1) == b'\x88'
        assert pause.seconds == 0, 'expected no pause for an image'
        with handle.snapshot():
            assert handle.memory.read(0, 1) == b'\x88'
    finally:
        handle.close()


def test_removed_image_is_vanished(image_dir, driver):
    path = _raw(image_dir, UUID + '.raw')
    info = _only(driver)
    handle = driver.open(info)
    try:
        path.unlink()
        with pytest.raises(base.GuestVanished, match='removed'):
            handle.check_alive()
    finally:
        handle.close()
    with pytest.raises(base.GuestVanished, match='gone'):
        driver.open(info)


def test_replaced_image_is_vanished(image_dir, driver):
    path = _raw(image_dir, UUID + '.raw')
    handle = driver.open(_only(driver))
    try:
        new = _raw(image_dir, 'new.tmp')
        os.replace(new, path)
        with pytest.raises(base.GuestVanished, match='replaced'):
            handle.check_alive()
    finally:
        handle.close()


def test_capabilities_offer_every_consistency_mode():
    assert set(dump.DumpDriver.capabilities) == {'live', 'pause', 'snapshot'}
