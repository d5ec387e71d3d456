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

"""A Linux kernel build's profile: its identity, symbols and struct layouts.

A profile is everything the probes need to know about one kernel *build*; it does not
depend on where a particular guest loaded that kernel (see ``locate``).  Symbols are kept
at their link-time addresses.

Profiles are made once per build, from the distribution's vmlinuz or from guest memory
(``builder``), and cached on disk in a :class:`ProfileStore` keyed by the build ID (or the
banner when there is none).  A cached profile loads in milliseconds: a small JSON file of
the layouts the probes declared, a compact symbol table, and the raw BTF kept for the
rare probe that asks for a type nobody declared.
"""

import hashlib
import json
import os

from vmi_agent.engine.errors import ProfileError
from vmi_agent.engine.linux.layout import Layout
from vmi_agent.engine.linux.symbols import SymbolTable
from vmi_agent.engine import storage
from vmi_agent.engine.storage import LazyFile, cache_path, read_json, replace_dir

FORMAT = 1
#: No cached profile file (symbols, BTF) is anywhere near this big.
MAX_FILE = 256 << 20
#: Symbols every attach needs (see ``locate``), resolved ahead like the probes' own.
CORE_SYMBOLS = ('_text', 'linux_banner', 'init_top_pgt', 'page_offset_base')


class Profile:
    """Identity, symbols and layouts of one kernel build.

    ``symbols`` may be a :class:`SymbolTable` or a callable that loads one: a cached
    profile answers the symbols it resolved ahead (``addresses``) without loading the
    whole table, which is what makes a cached attach cheap.
    """

    def __init__(self, release, banner, build_id, symbols, layouts, enums,
                 btf_bytes=None, btf=None, addresses=None):
        self.release = release
        self.banner = banner
        self.build_id = build_id
        self._symbols = symbols
        self._layouts = dict(layouts)
        self._enums = dict(enums)
        self._addresses = dict(addresses or {})
        self._btf_bytes = btf_bytes
        self._btf = btf
        self._structs = {}

    @property
    def key(self):
        """The cache key: the GNU build ID, else a digest of the banner."""
        if self.build_id:
            return self.build_id
        return 'banner-' + hashlib.sha256(self.banner.encode()).hexdigest()[:32]

    # -- symbols ------------------------------------------------------------------------
    @property
    def symbols(self):
        """The whole :class:`SymbolTable` (loaded on first use for a cached profile)."""
        if callable(self._symbols):
            self._symbols = self._symbols()
        return self._symbols

    def address(self, name):
        """Link-time address of ``name``; ProfileError (SymbolNotFoundError) if none."""
        value = self._addresses.get(name, _UNKNOWN)
        if value is _UNKNOWN:
            value = self._addresses[name] = self.symbols.get(name)
        if value is None:
            self.symbols.address(name)      # raises the table's own error
        return value

    def get_address(self, name, default=None):
        try:
            return self.address(name)
        except ProfileError:
            return default

    # -- types --------------------------------------------------------------------------
    @property
    def btf(self):
        if self._btf is None:
            if self._btf_bytes is None:
                raise ProfileError('profile for %s has no BTF' % self.release)
            from vmi_agent.engine.linux.btf import Btf
            self._btf = Btf.parse(bytes(self._btf_bytes))
        return self._btf

    def struct(self, name):
        """The :class:`Layout` of ``struct name`` (or a union of that name)."""
        layout = self._structs.get(name)
        if layout is None:
            data = self._layouts.get(name)
            if data is None:
                data = self.btf.layout(name)
                self._layouts[name] = data
            layout = self._structs[name] = Layout(name, data, self.struct)
        return layout

    def enum(self, name):
        """``{enumerator: value}`` of ``enum name``."""
        values = self._enums.get(name)
        if values is None:
            values = self._enums[name] = dict(self.btf.enum(name))
        return values

    def precompute(self, structs=(), enums=(), symbols=()):
        """Resolve these types and symbols now, so that they are in the cache file."""
        for name in CORE_SYMBOLS + tuple(symbols):
            self.get_address(name)
        for name in structs:
            layout = self.struct(name)
            for member in layout.members.values():
                # Nested structs the probes walk into are needed too.
                if member.get('kind') in ('struct', 'union') and member.get('type'):
                    try:
                        self.struct(member['type'])
                    except ProfileError:
                        pass
        for name in enums:
            self.enum(name)

    # -- serialisation ------------------------------------------------------------------
    def meta(self):
        return {'format': FORMAT, 'release': self.release, 'banner': self.banner,
                'build_id': self.build_id, 'layouts': self._layouts,
                'enums': self._enums, 'addresses': self._addresses}


class ProfileStore:
    """A directory of cached profiles, one sub-directory per kernel build.

    ``<dir>/<key>/profile.json``, ``symbols.bin`` and ``btf``; ``<dir>/images/<sha256>``
    maps a vmlinuz file's digest to its key, so that a known image is not unpacked
    again.  An operator may also drop ``System.map-<release>``, ``kallsyms-<release>``
    or ``vmlinuz-<release>`` files in the directory for kernels that need them.
    """

    def __init__(self, path):
        self.path = path

    def _dir(self, key):
        if not key or '/' in key or key.startswith('.'):
            raise ProfileError('bad profile key %r' % key)
        return os.path.join(self.path, key)

    def load(self, key):
        """The cached profile for ``key``, or None."""
        d = self._dir(key)
        meta = read_json(os.path.join(d, 'profile.json'), ProfileError)
        if meta is None or meta.get('format') != FORMAT:
            return None
        symbols = LazyFile(os.path.join(d, 'symbols.bin'), ProfileError, MAX_FILE)
        try:
            return Profile(meta['release'], meta['banner'], meta['build_id'],
                           lambda: SymbolTable.from_bytes(bytes(symbols)),
                           meta['layouts'], meta['enums'],
                           btf_bytes=LazyFile(os.path.join(d, 'btf'), ProfileError, MAX_FILE),
                           addresses=meta['addresses'])
        except (KeyError, TypeError) as exc:
            raise ProfileError('cached profile %s is incomplete: %s' % (d, exc)) from exc

    def save(self, profile):
        """Write ``profile`` atomically (a concurrent reader sees all of it or none)."""
        files = {'symbols.bin': profile.symbols.to_bytes(),
                 'profile.json': json.dumps(profile.meta(),
                                            separators=(',', ':')).encode()}
        if profile._btf_bytes is not None:
            files['btf'] = bytes(profile._btf_bytes)
        self._dir(profile.key)
        replace_dir(self.path, profile.key, files)

    def key_for_image(self, digest):
        try:
            with open(os.path.join(self.path, 'images', digest)) as f:
                return f.read().strip() or None
        except OSError:
            return None

    def remember_image(self, digest, key):
        d = os.path.join(self.path, 'images')
        os.makedirs(d, exist_ok=True)
        storage.write_file_atomic(os.path.join(d, digest), key.encode())

    def operator_file(self, kind, release):
        """An operator-supplied ``<kind>-<release>`` file in the store, or None."""
        path = os.path.join(self.path, '%s-%s' % (kind, release))
        return path if os.path.isfile(path) else None


_UNKNOWN = object()


def default_store_path():
    """``$NOVA_VMI_PROFILES``, else ``$XDG_CACHE_HOME/nova-vmi/profiles``."""
    return cache_path('NOVA_VMI_PROFILES', 'profiles')
