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

"""Build and cache the assets that the QEMU test-bed guest boots from.

The functional tests and benchmarks introspect a real Debian kernel, the one a cloud would
run, not a kernel built for the occasion.  This module fetches that kernel with apt
(``linux-image-<flavour>`` resolves to the current ``linux-image-6.1.0-<abi>-<flavour>``),
unpacks it outside the repository, and builds a tiny initramfs around ``busybox-static``:

- ``/init`` mounts the pseudo file systems, loads ``qemu_fw_cfg`` (so that
  ``-device vmcoreinfo`` can hand the kernel's VMCOREINFO to QMP ``dump-guest-memory``) and
  hands over to busybox ``init``, which reaps orphans and keeps :data:`SERIAL_SHELL` running
  on the serial console;
- ``/lib/modules/<name>.ko`` holds a few leaf modules (no dependencies, no hardware) that
  tests load and unload to watch the kernel's module list change;
- ``/bin/vmi-idle``, a tiny static program written here byte by byte, sleeps forever for
  process tests;
- ``/bin/vmi-trigger`` is the guest trigger program of ``guest/`` (static C, built here with
  ``make -C guest``; the host needs gcc and the static glibc of ``libc6-dev``).

:data:`SERIAL_SHELL` is the guest side of the command protocol that
``tools/testbed/guest.py`` speaks: one request line ``<marker> <base64 script>`` in, and
``\\x01VMI <marker> <status> <stdout bytes> <stderr bytes>\\n``, the two outputs and
``\\x01VMI <marker> END\\n`` out.  The line is raw (no echo, no CR/LF translation), so the
lengths frame the outputs exactly.

Everything lives in the cache directory (``$NOVA_VMI_CACHE``, else ``~/.cache/nova-vmi``):
``<flavour>.json`` records the last build, so a cached call costs a few ``stat`` calls.
Builders take an exclusive lock on ``<cache>/.lock`` and move finished files into place
with atomic renames, so concurrent callers are safe.  ``python -m tools.testbed.assets``
builds the assets and prints their paths as JSON.
"""

import argparse
import dataclasses
import fcntl
import gzip
import hashlib
import json
import lzma
import os
import re
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

CACHE_ENV = 'NOVA_VMI_CACHE'
FLAVOURS = ('amd64', 'cloud-amd64')

#: Loaded by ``/init`` at boot: it publishes the VMCOREINFO address through fw_cfg.
BOOT_MODULES = ('qemu_fw_cfg',)

#: Leaf modules for insmod/rmmod tests.  Each has no module dependency, touches no hardware,
#: does nothing on load but register itself (``dummy`` also adds a ``dummy0`` net device),
#: and is built as a module in both flavours (``cloud-amd64`` has no ``crc8``).  Crypto
#: algorithms are left out on purpose: registering one starts the kernel's self-tests,
#: which may ask for more modules.
TEST_MODULES = ('dummy', 'crc7', 'crc_itu_t', 'cordic')

#: Where the guest finds its modules: ``/lib/modules/<name>.ko``.
GUEST_MODULE_DIR = '/lib/modules'

#: Guest path of :func:`idle_program`, what spawned processes run.
GUEST_IDLE_PROGRAM = '/bin/vmi-idle'

#: The I/O port of QEMU's isa-debugcon device, where the guest trigger writes.
DEBUGCON_PORT = 0x402

#: Guest path of the trigger program ``guest/vmi-trigger`` (:func:`build_trigger`):
#: ``vmi-trigger --port 0x402 0x54`` writes 'T' to the debug port.
GUEST_TRIGGER_PROGRAM = '/bin/vmi-trigger'

#: The trigger's sources in the repository: ``make -C`` this directory builds it.
TRIGGER_SOURCE_DIR = Path(__file__).resolve().parents[2] / 'guest'
TRIGGER_SOURCES = ('Makefile', 'vmi-trigger.c')

INIT_SCRIPT = r'''#!/bin/sh
# First process of the nova-vmi test-bed guest (tools/testbed/assets.py builds it).
export PATH=/sbin:/usr/sbin:/bin:/usr/bin
mount -t devtmpfs devtmpfs /dev
mount -t proc proc /proc
mount -t sysfs sysfs /sys
# Only emergencies may interleave with the command protocol on the serial console.
dmesg -n 1
# No modprobe here: an empty path makes request_module() fail without a helper process.
echo > /proc/sys/kernel/modprobe
for m in %(boot_modules)s; do
    insmod %(module_dir)s/$m.ko || echo "init: cannot load $m" >&2
done
mkdir -p /tmp/vmi
exec /sbin/init
'''

INITTAB = '''\
# busybox init: reap orphans and keep the command shell alive on the serial console.
ttyS0::respawn:/etc/vmi/shell
'''

SERIAL_SHELL = r'''#!/bin/sh
# Command loop on the serial console, driven by tools/testbed/guest.py.
# In:  "<marker> <base64 of a shell script>"
# Out: "\001VMI <marker> <status> <stdout bytes> <stderr bytes>\n", stdout, stderr,
#      "\001VMI <marker> END\n"
# Raw line (no echo, no CR/LF translation); ^C (isig) interrupts the running script only.
stty raw -echo isig 115200
trap : INT
cd /
printf '\001VMI READY %s\n' "$$"
# A ^C that lands between scripts fails "read" like an end of file would: retry a while.
fails=0
while :; do
    if ! read -r marker script; then
        fails=$((fails + 1))
        [ $fails -lt 100 ] && continue
        exit 1
    fi
    fails=0
    [ -n "$script" ] || continue
    base64 -d >/tmp/vmi/cmd <<EOF
$script
EOF
    # New files each time: a background process of an earlier script may still write.
    rm -f /tmp/vmi/out /tmp/vmi/err
    sh /tmp/vmi/cmd </dev/null >/tmp/vmi/out 2>/tmp/vmi/err
    status=$?
    set -- $(stat -c %s /tmp/vmi/out /tmp/vmi/err)
    printf '\001VMI %s %s %s %s\n' "$marker" "$status" "$1" "$2"
    # Exactly the bytes announced, even if a background process still appends.
    head -c "$1" /tmp/vmi/out
    head -c "$2" /tmp/vmi/err
    printf '\001VMI %s END\n' "$marker"
done
'''

# Bump when the layout of the cache or of the initramfs changes in a way the digest below
# does not see.
_FORMAT = 1


class AssetError(RuntimeError):
    """The assets could not be built (a command failed, a package looks unexpected)."""


@dataclasses.dataclass(frozen=True)
class Assets:
    """Paths of a built guest: everything ``tools/testbed/guest.py`` needs to boot it."""

    flavour: str
    package: str        # e.g. linux-image-6.1.0-56-amd64
    release: str        # e.g. 6.1.0-56-amd64, as uname -r says in the guest
    vmlinuz: Path
    system_map: Path    # the Debian placeholder: real symbols come from the vmlinuz
    config: Path
    modules_dir: Path   # host copy of /lib/modules/<release> from the package
    initramfs: Path
    boot_modules: tuple
    test_modules: tuple

    def paths(self):
        """Every file the assets consist of (used to check that a cached build is whole)."""
        return (self.vmlinuz, self.system_map, self.config, self.modules_dir, self.initramfs)

    def to_json(self):
        """A JSON-ready dict (paths as strings)."""
        return {k: (str(v) if isinstance(v, Path) else v)
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_json(cls, data):
        """Inverse of :meth:`to_json`."""
        kwargs = {}
        for field in dataclasses.fields(cls):
            value = data[field.name]
            if field.type is Path:
                value = Path(value)
            elif field.type is tuple:
                value = tuple(value)
            kwargs[field.name] = value
        return cls(**kwargs)


def cache_dir():
    """The cache directory: ``$NOVA_VMI_CACHE`` if set, else ``~/.cache/nova-vmi``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / '.cache' / 'nova-vmi')


def _run(cmd, cwd=None):
    """Run ``cmd``; return its stdout, or raise :class:`AssetError` with what it printed."""
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise AssetError('cannot run %s: %s' % (' '.join(cmd), exc)) from exc
    if proc.returncode != 0:
        raise AssetError('%s failed with exit status %d:\n%s%s'
                         % (' '.join(cmd), proc.returncode, proc.stdout, proc.stderr))
    return proc.stdout


def resolve_kernel_package(flavour='amd64'):
    """Name the kernel package that ``linux-image-<flavour>`` currently depends on."""
    meta = 'linux-image-%s' % flavour
    out = _run(['apt-cache', 'depends', meta])
    found = re.findall(r'^\s*Depends:\s*(linux-image-\S+-%s)$' % re.escape(flavour),
                       out, re.MULTILINE)
    if len(found) != 1:
        raise AssetError('cannot tell the kernel package from "apt-cache depends %s" '
                         '(did "apt-get update" run?):\n%s' % (meta, out))
    return found[0]


def _download_and_extract(package, dest, cache):
    """``apt-get download`` a package into the cache and unpack it to ``dest``."""
    debs = cache / 'debs'
    debs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=debs) as tmp:
        _run(['apt-get', 'download', '-q', package], cwd=tmp)
        found = sorted(Path(tmp).glob('*.deb'))
        if len(found) != 1:
            raise AssetError('apt-get download %s left %s' % (package, found))
        tree = Path(tmp) / 'tree'
        _run(['dpkg-deb', '-x', str(found[0]), str(tree)])
        version = _run(['dpkg-deb', '-f', str(found[0]), 'Version']).strip()
        dest.parent.mkdir(parents=True, exist_ok=True)
        tree.rename(dest)
    return version


def modinfo(path):
    """The ``.modinfo`` section of a kernel module file as a dict (first value of a key).

    Reads the ELF section headers directly, so the host needs no kmod.
    """
    data = _module_bytes(path)
    if data[:4] != b'\x7fELF' or data[4] != 2:
        raise AssetError('%s is not a 64-bit ELF file' % path)
    shoff, = struct.unpack_from('<Q', data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from('<HHH', data, 0x3a)
    headers = [struct.unpack_from('<IIQQQQIIQQ', data, shoff + i * shentsize)
               for i in range(shnum)]
    names_at = headers[shstrndx][4]
    for sh_name, _, _, _, offset, size, _, _, _, _ in headers:
        start = names_at + sh_name
        if data[start:data.index(b'\0', start)] == b'.modinfo':
            info = {}
            for item in data[offset:offset + size].split(b'\0'):
                key, sep, value = item.decode('utf-8', 'replace').partition('=')
                if sep:
                    info.setdefault(key, value)
            return info
    raise AssetError('%s has no .modinfo section' % path)


def _module_bytes(path):
    """A module's ELF image, decompressed if the package ships it compressed."""
    if path.name.endswith('.ko.xz'):
        return lzma.decompress(path.read_bytes())
    if path.name.endswith('.ko.gz'):
        return gzip.decompress(path.read_bytes())
    if path.name.endswith('.ko.zst'):
        proc = subprocess.run(['zstd', '-dcq', str(path)], capture_output=True, check=False)
        if proc.returncode != 0:
            raise AssetError('zstd -dc %s failed: %s' % (path, proc.stderr.decode()))
        return proc.stdout
    return path.read_bytes()


def find_modules(modules_dir, names):
    """Map module names to their files in the kernel package (``-`` and ``_`` are one)."""
    wanted = set(names)
    found = {}
    for path in (modules_dir / 'kernel').rglob('*.ko*'):
        name = path.name.split('.ko')[0].replace('-', '_')
        if name in wanted:
            found[name] = path
    missing = wanted - set(found)
    if missing:
        raise AssetError('modules %s are not in %s' % (sorted(missing), modules_dir))
    return found


class _Cpio:
    """A ``newc`` cpio archive written in memory: owners, modes and device nodes without root."""

    def __init__(self):
        self._out = bytearray()
        self._ino = 0

    def _entry(self, name, mode, data=b'', rdev=(0, 0)):
        self._ino += 1
        encoded = name.encode() + b'\0'
        fields = (self._ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1],
                  len(encoded), 0)
        self._out += b'070701' + b''.join(b'%08x' % f for f in fields) + encoded
        self._out += b'\0' * (-len(self._out) % 4) + data
        self._out += b'\0' * (-len(self._out) % 4)

    def dir(self, name):
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name, data, mode=0o644):
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name, target):
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, name, major, minor):
        self._entry(name, stat.S_IFCHR | 0o600, rdev=(major, minor))

    def finish(self):
        self._entry('TRAILER!!!', 0)
        return bytes(self._out)


def _guest_files():
    """The initramfs's own text files, keyed by path."""
    init = INIT_SCRIPT % {'boot_modules': ' '.join(BOOT_MODULES),
                          'module_dir': GUEST_MODULE_DIR}
    return {'init': init, 'etc/inittab': INITTAB, 'etc/vmi/shell': SERIAL_SHELL}


def _static_program(code):
    """A minimal static x86-64 ELF executable: one R+X segment holding ``code``."""
    base = 0x400000
    phnum = 2
    entry = 64 + 56 * phnum
    size = entry + len(code)
    header = struct.pack('<4sBBBB8xHHIQQQIHHHHHH', b'\x7fELF', 2, 1, 1, 0,
                         2, 0x3e, 1, base + entry, 64, 0, 0, 64, 56, phnum, 64, 0, 0)
    load = struct.pack('<IIQQQQQQ', 1, 5, 0, base, base, size, size, 0x1000)   # PT_LOAD, R+X
    stack = struct.pack('<IIQQQQQQ', 0x6474e551, 6, 0, 0, 0, 0, 0, 16)   # PT_GNU_STACK, RW
    return header + load + stack + code


def idle_program():
    """A static executable that calls pause() forever (185 bytes).

    Tests and benchmarks start hundreds of processes: a forked busybox shell costs the
    guest about 170 KiB each, this about 65 KiB (1,000 fit in a 256 MiB guest).  Run through
    a symlink, its comm is the symlink's name.
    """
    return _static_program(bytes.fromhex(
        'b822000000'        # mov eax, 34 (pause)
        '0f05'              # syscall
        'ebf7'))            # jmp back to the mov


def _trigger_sources_digest():
    """Names the trigger program's build: a hash of its sources."""
    h = hashlib.sha256()
    for name in TRIGGER_SOURCES:
        try:
            data = (TRIGGER_SOURCE_DIR / name).read_bytes()
        except OSError as exc:
            raise AssetError('cannot read the trigger source: %s' % exc) from exc
        h.update(b'%s %d\n' % (name.encode(), len(data)) + data)
    return h.hexdigest()[:12]


def build_trigger(dest):
    """Build ``guest/vmi-trigger`` (static C) into ``dest`` with ``make -C guest``.

    The output goes to ``dest`` only (``make OUT=...``): the work tree stays clean.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        out = Path(tmp) / 'vmi-trigger'
        _run(['make', '-s', '-C', str(TRIGGER_SOURCE_DIR), 'OUT=%s' % out])
        os.replace(out, dest)
    return dest


def _ensure_trigger(cache):
    """The trigger program's bytes, built once per source digest into the cache."""
    path = cache / 'trigger' / ('vmi-trigger-%s' % _trigger_sources_digest())
    if not path.exists():
        build_trigger(path)
    return path.read_bytes()


def _initramfs_digest(busybox_version):
    """Names an initramfs build: what goes in it, besides the kernel release."""
    recipe = json.dumps([_FORMAT, busybox_version, BOOT_MODULES, TEST_MODULES,
                         _guest_files(), idle_program().hex(), _trigger_sources_digest()],
                        sort_keys=True)
    return hashlib.sha256(recipe.encode()).hexdigest()[:12]


def build_initramfs(busybox, module_files, trigger):
    """An uncompressed initramfs (booting skips decompression under TCG) as bytes.

    ``busybox`` is the static binary; ``module_files`` maps module names to their files;
    ``trigger`` is the bytes of the built ``guest/vmi-trigger``.
    """
    applets = _run([str(busybox), '--list-full']).split()
    cpio = _Cpio()
    for name in ('bin', 'sbin', 'usr', 'usr/bin', 'usr/sbin', 'dev', 'proc', 'sys', 'tmp',
                 'etc', 'etc/vmi', 'lib', GUEST_MODULE_DIR.lstrip('/')):
        cpio.dir(name)
    # The kernel opens /dev/console for init's stdio before /init can mount devtmpfs.
    cpio.chardev('dev/console', 5, 1)
    cpio.file('bin/busybox', busybox.read_bytes(), 0o755)
    cpio.file(GUEST_IDLE_PROGRAM.lstrip('/'), idle_program(), 0o755)
    cpio.file(GUEST_TRIGGER_PROGRAM.lstrip('/'), trigger, 0o755)
    for applet in applets:
        if applet != 'bin/busybox':
            cpio.symlink(applet, '/bin/busybox')
    for path, text in _guest_files().items():
        cpio.file(path, text.encode(), 0o755 if text.startswith('#!') else 0o644)
    for name, path in sorted(module_files.items()):
        cpio.file('%s/%s.ko' % (GUEST_MODULE_DIR.lstrip('/'), name), _module_bytes(path))
    return cpio.finish()


def _atomic_write(path, data):
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as tmp:
        tmp.write(data)
    os.chmod(tmp.name, 0o644)
    os.replace(tmp.name, path)


def _load_manifest(manifest, cache):
    """The cached :class:`Assets` if the manifest is current and its files are all there."""
    try:
        assets = Assets.from_json(json.loads(manifest.read_text()))
        busybox_version = (cache / 'busybox' / 'VERSION').read_text().strip()
    except (OSError, ValueError, KeyError, TypeError):
        return None
    current = assets.initramfs.name.endswith('-%s.cpio' % _initramfs_digest(busybox_version))
    if not current or not all(p.exists() for p in assets.paths()):
        return None
    return assets


def _ensure_busybox(cache):
    """The busybox binary of the ``busybox-static`` package, fetched once into the cache."""
    root = cache / 'busybox'
    version_file = root / 'VERSION'
    busybox = root / 'tree' / 'bin' / 'busybox'
    if not version_file.exists() or not busybox.exists():
        shutil.rmtree(root / 'tree', ignore_errors=True)
        version = _download_and_extract('busybox-static', root / 'tree', cache)
        if not busybox.exists():
            raise AssetError('busybox-static has no /bin/busybox (looked at %s)' % busybox)
        _atomic_write(version_file, version.encode())
    return busybox, version_file.read_text().strip()


def _build(flavour, cache, manifest):
    """Build whatever is missing for ``flavour``; the caller holds the lock."""
    package = resolve_kernel_package(flavour)
    release = package[len('linux-image-'):]
    kernel = cache / 'kernel' / release
    if not (kernel / 'boot' / ('vmlinuz-' + release)).exists():
        shutil.rmtree(kernel, ignore_errors=True)
        _download_and_extract(package, kernel, cache)
    modules_dir = kernel / 'lib' / 'modules' / release
    vmlinuz = kernel / 'boot' / ('vmlinuz-' + release)
    if not vmlinuz.exists() or not modules_dir.is_dir():
        raise AssetError('%s has no %s or no %s' % (package, vmlinuz, modules_dir))

    busybox, busybox_version = _ensure_busybox(cache)
    initramfs = cache / 'initramfs' / ('%s-%s.cpio' % (release, _initramfs_digest(
        busybox_version)))
    if not initramfs.exists():
        module_files = find_modules(modules_dir, BOOT_MODULES + TEST_MODULES)
        for name in TEST_MODULES:
            depends = modinfo(module_files[name]).get('depends', '')
            if depends:
                raise AssetError('test module %s now depends on %s: pick another leaf module'
                                 % (name, depends))
        trigger = _ensure_trigger(cache)
        _atomic_write(initramfs, build_initramfs(busybox, module_files, trigger))

    assets = Assets(flavour=flavour, package=package, release=release, vmlinuz=vmlinuz,
                    system_map=kernel / 'boot' / ('System.map-' + release),
                    config=kernel / 'boot' / ('config-' + release),
                    modules_dir=modules_dir, initramfs=initramfs,
                    boot_modules=BOOT_MODULES, test_modules=TEST_MODULES)
    _atomic_write(manifest, json.dumps(assets.to_json(), indent=2).encode())
    return assets


def ensure_assets(flavour='amd64', refresh=False):
    """Return the :class:`Assets` for ``flavour``, building them first if needed.

    A cached build is reused without asking apt anything; ``refresh=True`` asks apt which
    kernel is current and builds again if it changed (or if the initramfs recipe did).
    """
    if flavour not in FLAVOURS:
        raise AssetError('unknown flavour %r (known: %s)' % (flavour, ', '.join(FLAVOURS)))
    cache = cache_dir()
    manifest = cache / ('%s.json' % flavour)
    assets = None if refresh else _load_manifest(manifest, cache)
    if assets is not None:
        return assets
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / '.lock', 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        assets = None if refresh else _load_manifest(manifest, cache)
        return assets or _build(flavour, cache, manifest)


def main(argv=None):
    """Command line: build the assets for a flavour and print their paths as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--flavour', default='amd64', choices=FLAVOURS)
    parser.add_argument('--refresh', action='store_true',
                        help='ask apt for the current kernel even if one is cached')
    args = parser.parse_args(argv)
    try:
        assets = ensure_assets(args.flavour, refresh=args.refresh)
    except AssetError as exc:
        print('error: %s' % exc, file=sys.stderr)
        return 1
    print(json.dumps(assets.to_json(), indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
