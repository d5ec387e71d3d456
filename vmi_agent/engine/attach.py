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

"""Attach to a guest: identify its kernel, get a profile, locate it, return a kernel.

The order is what makes a second attach fast:

1. with a kernel image named, its file digest is looked up in the profile store;
2. without one, the kernel's VMCOREINFO (found by a scan) gives release and build ID,
   which is the store's key; an operator's ``vmlinuz-<release>`` or ``System.map-...``
   in the store is used next;
3. only a kernel nobody has seen is profiled, from its image or from guest memory,
   and the profile is saved for the next attach.
"""

import functools
import hashlib
import os

from vmi_agent.engine import probes
from vmi_agent.engine.linux import builder, vmcoreinfo
from vmi_agent.engine.linux.kernel import LinuxKernel
from vmi_agent.engine.linux.locate import locate
from vmi_agent.engine.linux.profile import ProfileStore, default_store_path


class _LazyScan:
    """VMCOREINFO candidates, scanned for on first use and remembered.

    Where it was found in a memory file is remembered for the process's next attach to
    the same file (``_HINTS``); a stale hint costs one read.
    """

    def __init__(self, memory):
        self._path = getattr(memory, 'path', None)
        self._iter = vmcoreinfo.find(memory, _HINTS.get(self._path))
        self._seen = []

    def __iter__(self):
        yield from self._seen
        for info in self._iter:
            if not self._seen and info.paddr is not None:
                if len(_HINTS) >= 4096:       # one per guest file; bound it anyway
                    _HINTS.clear()
                _HINTS[self._path] = info.paddr
            self._seen.append(info)
            yield info

    def first(self):
        return next(iter(self), None)


_HINTS = {}


def _digest(path):
    """SHA-256 of a kernel image, remembered while the file is unchanged."""
    st = os.stat(path)
    return _digest_of(os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_ino)


@functools.lru_cache(maxsize=64)
def _digest_of(path, size, mtime_ns, inode):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


def get_profile(memory, store, infos, vmlinux=None, system_map=None, kallsyms_file=None):
    """The profile of the kernel in ``memory``, from the store or freshly built."""
    needs = probes.requirements()
    if vmlinux:
        digest = _digest(vmlinux)
        if not (system_map or kallsyms_file):
            key = store.key_for_image(digest)
            profile = store.load(key) if key else None
            if profile is not None:
                return profile
        profile = builder.from_image(vmlinux, needs, system_map, kallsyms_file)
        store.save(profile)
        store.remember_image(digest, profile.key)
        return profile
    info = infos.first()
    if info is not None:
        profile = store.load(info.build_id) if info.build_id else None
        if profile is not None:
            return profile
        image = store.operator_file('vmlinuz', info.release)
        system_map = system_map or store.operator_file('System.map', info.release)
        kallsyms_file = kallsyms_file or store.operator_file('kallsyms', info.release)
        if image:
            profile = builder.from_image(image, needs, system_map, kallsyms_file)
            store.save(profile)
            return profile
    profile = builder.from_memory(memory, infos, needs)
    store.save(profile)
    return profile


def attach(memory, vmlinux=None, system_map=None, kallsyms_file=None, profile_dir=None):
    """A :class:`LinuxKernel` for the guest whose physical memory is ``memory``."""
    store = ProfileStore(profile_dir or default_store_path())
    infos = _LazyScan(memory)
    profile = get_profile(memory, store, infos, vmlinux, system_map, kallsyms_file)
    return LinuxKernel(memory, profile, locate(memory, profile, infos))


__all__ = ['attach', 'get_profile']
