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

"""The ``dump`` driver: memory images taken earlier, analysed offline.

A dump (a raw copy of the RAM file, or QEMU's ``dump-guest-memory`` ELF core) is already a
consistent view of its guest, so the driver offers every consistency mode for free: pause
and snapshot do nothing.  It lets the agent, and its tests, work on a host without live
guests, and lets an operator inspect evidence kept from an incident.

``[dump] image_dir`` holds ``<instance-uuid>.raw``/``.ram`` (raw RAM) or ``.elf``/``.core``
(ELF core) files, with an optional ``<instance-uuid>.json`` sidecar giving ``name`` and
``machine``.
"""

import contextlib
import json
import logging
import os
import uuid

from vmi_agent.conf import dump as dump_conf
from vmi_agent.drivers import base
from vmi_agent.engine.errors import MemoryFormatError
from vmi_agent.engine.memory import open_memory

LOG = logging.getLogger(__name__)

#: Image suffix -> format, in the order preferred when one UUID has several images.
FORMATS = {'.raw': 'raw', '.ram': 'raw', '.elf': 'elf', '.core': 'elf'}
MACHINES = ('q35', 'pc')
MAX_SIDECAR_BYTES = 64 * 1024


def read_sidecar(path):
    """``(name, machine)`` from an image's JSON sidecar; defaults where absent or bad."""
    try:
        with open(path, 'rb') as f:
            raw = f.read(MAX_SIDECAR_BYTES + 1)
    except FileNotFoundError:
        return None, 'q35'
    except OSError as exc:
        LOG.warning('ignoring dump sidecar %s: cannot read it: %s', path, exc.strerror or exc)
        return None, 'q35'
    try:
        if len(raw) > MAX_SIDECAR_BYTES:
            raise ValueError('it is larger than %d bytes' % MAX_SIDECAR_BYTES)
        doc = json.loads(raw)
        if not isinstance(doc, dict):
            raise ValueError('it is not a JSON object')
        name, machine = doc.get('name'), doc.get('machine', 'q35')
        if name is not None and not isinstance(name, str):
            raise ValueError('"name" is %s, expected a string' % type(name).__name__)
        if machine not in MACHINES:
            raise ValueError('"machine" is %r, expected one of %s'
                             % (machine, ', '.join(MACHINES)))
    except ValueError as exc:
        LOG.warning('ignoring dump sidecar %s: %s', path, exc)
        return None, 'q35'
    return name, machine


def _image_uuid(stem):
    try:
        return str(uuid.UUID(stem))
    except ValueError:
        return None


class DumpGuestHandle(base.GuestHandle):
    """An opened image: already consistent, so pause and snapshot cost nothing."""

    def __init__(self, info, memory, identity):
        super().__init__(info, memory)
        self.path = info.location[0]
        self._identity = identity

    @contextlib.contextmanager
    def pause(self):
        yield base.Pause()

    @contextlib.contextmanager
    def snapshot(self):
        yield

    def check_alive(self):
        """GuestVanished if the image was removed or replaced."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise base.GuestVanished('memory image %s of guest %s was removed'
                                     % (self.path, self.info.uuid)) from None
        except OSError as exc:
            raise base.DriverError('cannot stat memory image %s: %s'
                                   % (self.path, exc.strerror or exc)) from exc
        if (st.st_dev, st.st_ino) != self._identity:
            raise base.GuestVanished('memory image %s of guest %s was replaced'
                                     % (self.path, self.info.uuid))


class DumpDriver(base.Driver):
    """Guests are memory image files in ``[dump] image_dir``."""

    name = 'dump'
    capabilities = ('live', 'pause', 'snapshot')

    def __init__(self, conf):
        super().__init__(conf)
        dump_conf.register_opts(conf)           # idempotent; the agent registers them too
        self.image_dir = conf.dump.image_dir

    def list_guests(self):
        images = {}
        for entry in self._entries():
            stem, suffix = os.path.splitext(entry)
            if suffix not in FORMATS:
                continue
            instance_uuid = _image_uuid(stem)
            if instance_uuid is None:
                LOG.debug('ignoring %s in %s: its name is not <instance-uuid>%s',
                          entry, self.image_dir, suffix)
                continue
            images.setdefault(instance_uuid, []).append((stem, suffix))
        return [self._info(instance_uuid, found) for instance_uuid, found in images.items()]

    def _entries(self):
        try:
            return sorted(os.listdir(self.image_dir))
        except FileNotFoundError:
            return []
        except OSError as exc:
            LOG.warning('cannot list memory images in %s: %s', self.image_dir,
                        exc.strerror or exc)
            return []

    def _info(self, instance_uuid, found):
        found.sort(key=lambda image: list(FORMATS).index(image[1]))
        stem, suffix = found[0]
        if len(found) > 1:
            LOG.warning('guest %s has several images in %s; using %s%s', instance_uuid,
                        self.image_dir, stem, suffix)
        name, machine = read_sidecar(os.path.join(self.image_dir, stem + '.json'))
        path = os.path.join(self.image_dir, stem + suffix)
        return base.GuestInfo(uuid=instance_uuid, name=name,
                              location=(path, FORMATS[suffix], machine))

    def open(self, info):
        try:
            path, fmt, machine = info.location
        except ValueError:
            raise base.GuestNotFound('guest %s is not a guest of the dump driver (location %r)'
                                     % (info.uuid, info.location)) from None
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise base.GuestVanished('memory image %s of guest %s is gone'
                                     % (path, info.uuid)) from None
        except OSError as exc:
            raise base.DriverError('cannot stat memory image %s: %s'
                                   % (path, exc.strerror or exc)) from exc
        try:
            memory = open_memory(path, fmt, machine)
        except (MemoryFormatError, OSError) as exc:
            if not os.path.exists(path):
                raise base.GuestVanished('memory image %s of guest %s is gone'
                                         % (path, info.uuid)) from exc
            raise base.DriverError('cannot open memory image of guest %s: %s'
                                   % (info.uuid, exc)) from exc
        return DumpGuestHandle(info, memory, (st.st_dev, st.st_ino))
