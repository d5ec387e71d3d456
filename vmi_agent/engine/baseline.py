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

"""Baselines: what a guest's memory looked like the first time, kept across runs.

Some questions have no answer in one snapshot: "has the kernel's code changed?" needs
the code as it was.  A baseline is taken on the first run for a guest and a kernel
build and compared with on later runs.  It lives in a :class:`BaselineStore`, a
directory on the host, one sub-directory per guest and per kernel build:

``<dir>/<sha256 of the guest id>/<build key>/meta.json`` plus ``<region>.digests`` and
``<region>.pages`` for each :class:`PageImage` (one region of memory, page by page).

A :class:`PageImage` keeps a SHA-256 digest per 4 KiB page (compared on every run:
SHA-256 runs at C speed with the SHA extensions, about 1 GB/s on the test machines)
and the pages themselves, zlib-compressed in blocks of 64 KiB, so that the bytes of a
page that changed can be read back to say *what* changed without keeping megabytes
in memory.  The files are host data that something may have truncated or damaged:
sizes and indexes are checked when loading, and every page read back is checked
against its digest (:class:`BaselineError` otherwise).
"""

import hashlib
import json
import os
import threading
import time
import zlib

from vmi_agent.engine.errors import VMIError
from vmi_agent.engine.storage import (LazyFile, cache_path, read_file, read_json,
                                      replace_dir)

FORMAT = 1
PAGE_SIZE = 4096
DIGEST_SIZE = 32
BLOCK_PAGES = 16
#: Decompressed blocks kept while a comparison reads a baseline (64 KiB each).
CACHED_BLOCKS = 8
#: A baseline region is a kernel image section: far below this.
MAX_REGION = 256 << 20
#: Baselines read, by the identity of their meta.json, oldest first (see ``load``).
_LOADED = {}
_LOADED_MAX = 32
_LOADED_LOCK = threading.Lock()


class BaselineError(VMIError):
    """A stored baseline is unreadable, inconsistent or damaged."""


def page_digests(data):
    """SHA-256 of each 4 KiB page of ``data`` (the last one may be shorter), joined."""
    sha = hashlib.sha256
    return b''.join(sha(data[off:off + PAGE_SIZE]).digest()
                    for off in range(0, len(data), PAGE_SIZE))


class PageImage:
    """One region of memory as it was: page digests and the compressed pages.

    ``start`` is the region's address (any address space the caller likes: it is only
    stored) and ``size`` its length in bytes.  ``data`` is the compressed pages, or a
    :class:`~vmi_agent.engine.storage.LazyFile` of them: most runs find nothing changed
    and never read it.
    """

    def __init__(self, start, size, digests, blocks, data):
        if not (isinstance(start, int) and isinstance(size, int)
                and 0 < size <= MAX_REGION):
            raise BaselineError('region %r+%r out of range' % (start, size))
        self.start = start
        self.size = size
        self.pages = -(-size // PAGE_SIZE)
        if len(digests) != self.pages * DIGEST_SIZE:
            raise BaselineError('digests do not match the region size')
        if len(blocks) != -(-self.pages // BLOCK_PAGES):
            raise BaselineError('block index does not match the region size')
        for offset, length in blocks:
            if not (isinstance(offset, int) and isinstance(length, int)
                    and 0 <= offset and 0 < length and offset + length <= len(data)):
                raise BaselineError('block index points outside the page data')
        self.digests = digests
        self._blocks = blocks
        self._data = data
        self._blocks_cache = {}
        self._verified = set()

    @classmethod
    def capture(cls, start, data):
        """A PageImage of ``data`` (bytes: copy live memory first, then capture)."""
        blocks, parts, offset = [], [], 0
        span = PAGE_SIZE * BLOCK_PAGES
        for at in range(0, len(data), span):
            packed = zlib.compress(data[at:at + span], 1)
            blocks.append((offset, len(packed)))
            parts.append(packed)
            offset += len(packed)
        return cls(start, len(data), page_digests(data), blocks, b''.join(parts))

    def digest(self, index):
        return self.digests[index * DIGEST_SIZE:(index + 1) * DIGEST_SIZE]

    def page(self, index):
        """The bytes of page ``index`` as captured, checked against its digest."""
        if not 0 <= index < self.pages:
            raise IndexError(index)
        block = index // BLOCK_PAGES
        raw = self._blocks_cache.pop(block, None)
        if raw is None:
            raw = self._inflate(block)
            while len(self._blocks_cache) >= CACHED_BLOCKS:
                del self._blocks_cache[next(iter(self._blocks_cache))]
        self._blocks_cache[block] = raw         # most recently used last
        at = (index % BLOCK_PAGES) * PAGE_SIZE
        page = raw[at:at + PAGE_SIZE]
        if index not in self._verified:
            if hashlib.sha256(page).digest() != self.digest(index):
                raise BaselineError('baseline page %d does not match its digest' % index)
            self._verified.add(index)
        return page

    def _inflate(self, block):
        offset, length = self._blocks[block]
        expected = min(BLOCK_PAGES * PAGE_SIZE, self.size - block * BLOCK_PAGES * PAGE_SIZE)
        try:
            raw = zlib.decompressobj().decompress(
                bytes(self._data)[offset:offset + length], expected + 1)
        except zlib.error as exc:
            raise BaselineError('baseline block %d is damaged: %s' % (block, exc)) from None
        if len(raw) != expected:
            raise BaselineError('baseline block %d has the wrong size' % block)
        return raw

    def describe(self):
        return {'start': self.start, 'size': self.size,
                'blocks': [list(b) for b in self._blocks]}


class BaselineStore:
    """A directory of baselines, keyed by guest identity and kernel build."""

    def __init__(self, path):
        self.path = path

    def _dir(self, guest_id, build_key):
        if (not isinstance(build_key, str) or not build_key or '/' in build_key
                or build_key.startswith('.') or '\0' in build_key):
            raise BaselineError('bad kernel build key %r' % (build_key,))
        guest = hashlib.sha256(str(guest_id).encode('utf-8', 'replace')).hexdigest()[:32]
        return os.path.join(self.path, guest), build_key

    def load(self, guest_id, build_key):
        """``(meta, {region: PageImage})`` stored for this guest and build, or None.

        A baseline read before is reused while its ``meta.json`` is the same file (a
        new baseline is a new directory renamed into place): a run costs a stat, not
        a read of every digest.
        """
        parent, name = self._dir(guest_id, build_key)
        d = os.path.join(parent, name)
        try:
            st = os.stat(os.path.join(d, 'meta.json'))
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise BaselineError('cannot read %s: %s' % (d, exc.strerror)) from None
        identity = (d, st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
        with _LOADED_LOCK:
            loaded = _LOADED.pop(identity, None)
        if loaded is None:
            loaded = self._read_baseline(d)
        with _LOADED_LOCK:
            _LOADED[identity] = loaded
            while len(_LOADED) > _LOADED_MAX:
                del _LOADED[next(iter(_LOADED))]
        return loaded

    def _read_baseline(self, d):
        meta = read_json(os.path.join(d, 'meta.json'), BaselineError)
        if meta is None or meta.get('format') != FORMAT:
            return None
        images = {}
        try:
            for region, info in meta['regions'].items():
                _check_name(region)
                digests = _read(os.path.join(d, region + '.digests'))
                data = LazyFile(os.path.join(d, region + '.pages'), BaselineError,
                                MAX_REGION * 2)
                images[region] = PageImage(info['start'], info['size'], digests,
                                           [tuple(b) for b in info['blocks']], data)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise BaselineError('baseline %s is incomplete: %s' % (d, exc)) from None
        return meta.get('meta', {}), images

    def save(self, guest_id, build_key, meta, images):
        """Store a baseline, replacing the previous one for this guest and build."""
        parent, name = self._dir(guest_id, build_key)
        files, regions = {}, {}
        for region, image in images.items():
            _check_name(region)
            files[region + '.digests'] = image.digests
            files[region + '.pages'] = bytes(image._data)
            regions[region] = image.describe()
        files['meta.json'] = json.dumps(
            {'format': FORMAT, 'guest_id': str(guest_id), 'build_key': build_key,
             'created': time.time(), 'meta': meta, 'regions': regions}).encode()
        replace_dir(parent, name, files)


def _check_name(region):
    if not isinstance(region, str) or not region.isidentifier():
        raise BaselineError('bad region name %r' % (region,))


def _read(path):
    return read_file(path, BaselineError, MAX_REGION * 2)


def default_state_path():
    """``$NOVA_VMI_STATE``, else ``$XDG_CACHE_HOME/nova-vmi/state``."""
    return cache_path('NOVA_VMI_STATE', 'state')


__all__ = ['BaselineError', 'BaselineStore', 'PageImage', 'default_state_path',
           'page_digests']
