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

"""Build the test bed's rootkit, a real kernel module, for the guest's kernel.

Host-side tampering (``Guest.write_u64``) shows what a probe sees when memory changes;
a module loaded into the guest shows what it sees when the *kernel* changes itself, with
its own locks, RCU and list helpers, as a rootkit would.  ``tools/testbed/lkm/`` holds the
module's source (``hide.c``, see its header for what it does) and its ``Kbuild``.

It is built out of tree against Debian's headers package for the guest's release,
``linux-headers-<release>`` (it pulls ``linux-headers-<abi>-common``, ``linux-kbuild-6.1``
and ``linux-compiler-gcc-12-x86``, hence gcc-12): the same ABI as the guest kernel, so
its vermagic and symbol versions match.  A missing package is installed with apt when
this process may (root, apt-get present), else the error names the command to run.

Built modules are cached in ``<cache>/lkm/<release>/<name>-<digest>.ko`` (``<cache>`` as
in :mod:`tools.testbed.assets`), keyed by the release and a digest of the sources, the
module name and the headers package's version; they are stripped of debug information
(about 11 KiB instead of 270), since tests copy them over the serial console.

``python -m tools.testbed.lkm [--release R] [--name N]`` builds (or finds) the module and
prints the path of the ``.ko``.
"""

import argparse
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tools.testbed import assets as testbed_assets

SOURCE_DIR = Path(__file__).resolve().parent / 'lkm'
SOURCES = ('hide.c', 'Kbuild')
DEFAULT_NAME = 'vmi_hide'
HEADERS_ROOT = Path('/usr/src')
#: Bump when the build recipe changes in a way the digest does not see.
_FORMAT = 1
_NAME = re.compile(r'[a-z][a-z0-9_]{0,54}')
_RELEASE = re.compile(r'[0-9][A-Za-z0-9.+~_-]{0,63}')
#: Tools the build needs besides the headers: (command, Debian package).
_TOOLS = (('make', 'make'), ('objcopy', 'binutils'))


class LkmBuildError(RuntimeError):
    """The module could not be built; the message says what to install or what failed."""


def headers_package(release):
    return 'linux-headers-%s' % release


def install_hint(release):
    """The exact command that installs what the build needs."""
    return 'apt-get install -y %s make' % headers_package(release)


def headers_dir(release):
    return HEADERS_ROOT / ('linux-headers-%s' % release)


def _check_release(release):
    if not _RELEASE.fullmatch(release or ''):
        raise LkmBuildError('not a kernel release: %r' % (release,))


def _run(cmd, cwd=None, env=None, timeout=600):
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LkmBuildError('cannot run %s: %s' % (' '.join(cmd), exc)) from exc
    if proc.returncode != 0:
        raise LkmBuildError('%s failed with exit status %d:\n%s%s'
                            % (' '.join(cmd), proc.returncode, proc.stdout[-4000:],
                               proc.stderr[-4000:]))
    return proc.stdout


def _missing(release):
    """Debian packages the build lacks on this host."""
    missing = []
    if not (headers_dir(release) / 'Makefile').is_file():
        missing.append(headers_package(release))
    for tool, package in _TOOLS:
        if shutil.which(tool) is None:
            missing.append(package)
    return missing


def ensure_build_deps(release, install=True):
    """Make sure the headers for ``release`` and the build tools are installed.

    Installs them with apt when ``install`` is true and this process is root; otherwise,
    or if apt fails, raises :class:`LkmBuildError` saying what to install.
    """
    _check_release(release)
    missing = _missing(release)
    if not missing:
        return
    hint = ('the test rootkit needs %s; install with: %s'
            % (', '.join(missing), install_hint(release)))
    if not install or os.geteuid() != 0 or shutil.which('apt-get') is None:
        raise LkmBuildError(hint + ' (as root)')
    env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    try:
        _run(['apt-get', 'install', '-y', '-q', '--no-install-recommends'] + missing,
             env=env)
    except LkmBuildError as exc:
        raise LkmBuildError('%s\n(apt-get update first if the package is not found)\n%s'
                            % (hint, exc)) from exc
    still = _missing(release)
    if still:
        raise LkmBuildError('%s; still missing after apt-get: %s' % (hint, ', '.join(still)))


def _headers_version(release):
    """The installed headers package's version (a rebuilt package invalidates the cache)."""
    try:
        return _run(['dpkg-query', '-W', '-f', '${Version}', headers_package(release)])
    except LkmBuildError:
        return 'unknown'


def source_digest(name, release):
    """Names one build: the sources, the module name and the headers package version."""
    h = hashlib.sha256()
    h.update(('%d\0%s\0%s\0%s\0' % (_FORMAT, name, release,
                                    _headers_version(release))).encode())
    for source in SOURCES:
        h.update(source.encode() + b'\0' + (SOURCE_DIR / source).read_bytes() + b'\0')
    return h.hexdigest()[:12]


def build(release=None, name=DEFAULT_NAME, install=True):
    """Return the path of ``<name>.ko`` built for ``release``, building it if needed.

    ``release`` defaults to the test bed's kernel (``assets.ensure_assets().release``).
    ``name`` is the module's name (``vmi_hide``; another one, e.g. ``vmi_hide2``, for a
    second instance in one guest).
    """
    if release is None:
        release = testbed_assets.ensure_assets().release
    _check_release(release)
    if not _NAME.fullmatch(name) or name == 'hide':
        raise LkmBuildError('module name must be 1-55 of [a-z0-9_], start with a letter '
                            'and not be "hide": %r' % (name,))
    ensure_build_deps(release, install)
    out_dir = testbed_assets.cache_dir() / 'lkm' / release
    target = out_dir / ('%s-%s.ko' % (name, source_digest(name, release)))
    if target.is_file():
        return target
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / '.lock', 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.is_file():
            _build_into(target, release, name)
    return target


def _build_into(target, release, name):
    """Compile in a scratch copy of the sources (kbuild writes next to them)."""
    with tempfile.TemporaryDirectory(dir=target.parent, prefix='.build-') as tmp:
        for source in SOURCES:
            shutil.copy(SOURCE_DIR / source, tmp)
        _run(['make', '-C', str(headers_dir(release)), 'M=%s' % tmp,
              'VMI_HIDE_NAME=%s' % name, 'modules'])
        built = Path(tmp) / ('%s.ko' % name)
        if not built.is_file():
            raise LkmBuildError('kbuild finished but left no %s' % built)
        stripped = Path(tmp) / 'stripped.ko'
        _run(['objcopy', '--strip-debug', str(built), str(stripped)])
        info = testbed_assets.modinfo(stripped)
        if info.get('name') != name or not info.get('vermagic', '').startswith(release + ' '):
            raise LkmBuildError('%s has name %r and vermagic %r, expected %s and %s'
                                % (built, info.get('name'), info.get('vermagic'), name,
                                   release))
        os.chmod(stripped, 0o644)
        os.replace(stripped, target)


def main(argv=None):
    """Command line: build the module (installing headers if needed); print its path."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--release', help="kernel release (default: the test bed's)")
    parser.add_argument('--flavour', default='amd64', choices=testbed_assets.FLAVOURS,
                        help='test-bed flavour whose release to use when no --release')
    parser.add_argument('--name', default=DEFAULT_NAME, help='module name')
    parser.add_argument('--no-install', action='store_true',
                        help='do not apt-get install missing headers; fail instead')
    args = parser.parse_args(argv)
    try:
        release = args.release or testbed_assets.ensure_assets(args.flavour).release
        path = build(release, args.name, install=not args.no_install)
    except (LkmBuildError, testbed_assets.AssetError) as exc:
        print('error: %s' % exc, file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == '__main__':
    sys.exit(main())
