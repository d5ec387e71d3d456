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

"""What the engine's small on-disk stores share: whole-directory replacement, lazy reads.

Profiles (``linux/profile.py``) and kernel_text baselines (``baseline.py``) are each a
directory of a few files.  Several processes may read one while another replaces it (two
agents' runs, a CLI beside an agent), so a directory is written aside and renamed into
place: a reader sees the old one or the new one, never a mix.
"""

import json
import os
import shutil
import tempfile


def replace_dir(parent, name, files):
    """Write ``files`` (``{file name: bytes}``) as ``parent/name``, atomically."""
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='.tmp-', dir=parent)
    try:
        for file_name, data in files.items():
            with open(os.path.join(tmp, file_name), 'wb') as f:
                f.write(data)
        final = os.path.join(parent, name)
        old = None
        if os.path.isdir(final):
            # rename() cannot replace a non-empty directory: move the old one aside.
            old = tempfile.mkdtemp(prefix='.old-', dir=parent)
            os.rename(final, os.path.join(old, name))
        os.rename(tmp, final)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_file_atomic(path, data):
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    fd, tmp = tempfile.mkstemp(prefix='.tmp-', dir=os.path.dirname(path) or '.')
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


class LazyFile:
    """A file's bytes, read on first use: most runs need neither a profile's BTF nor a
    baseline's page copies.  Read errors and files over ``limit`` bytes raise ``error``.
    """

    def __init__(self, path, error, limit):
        self.path = path
        self._error = error
        self._limit = limit
        self._data = None
        self._size = None

    def __len__(self):
        if self._data is not None:
            return len(self._data)
        if self._size is None:
            try:
                self._size = os.stat(self.path).st_size
            except OSError as exc:
                raise self._error('cannot read %s: %s'
                                  % (self.path, exc.strerror)) from None
        return self._size

    def __bytes__(self):
        if self._data is None:
            self._data = read_file(self.path, self._error, self._limit)
        return self._data


def read_file(path, error, limit):
    """The bytes of ``path``; ``error`` if it cannot be read or is over ``limit`` bytes."""
    try:
        with open(path, 'rb') as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise error('cannot read %s: %s' % (path, exc.strerror)) from None
    if len(data) > limit:
        raise error('%s is larger than %d bytes' % (path, limit))
    return data


def read_json(path, error):
    """The JSON object at ``path``; None when there is no file or it is not an object."""
    try:
        with open(path, 'rb') as f:
            value = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise error('%s is unreadable: %s' % (path, exc)) from None
    return value if isinstance(value, dict) else None


def cache_path(env_var, leaf):
    """``$<env_var>``, else ``$XDG_CACHE_HOME/nova-vmi/<leaf>`` (``~/.cache`` by default)."""
    path = os.environ.get(env_var)
    if path:
        return path
    cache = os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache')
    return os.path.join(cache, 'nova-vmi', leaf)
