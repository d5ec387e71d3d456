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

"""What the test bed's service processes share: a config file, a process, its log.

``options`` are ``{'[group] name': value}``, or ``{'name': value}`` for ``[DEFAULT]``.
Each service runs as its own process group, as an operator would run it, and is stopped
with SIGTERM (SIGKILL if it lingers).
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time


def free_port():
    """A TCP port nothing listens on now, on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def write_config(path, options):
    """Write ``options`` to ``path`` as an oslo.config file."""
    groups = {}
    for key, value in options.items():
        group, name = (key[1:].split('] ', 1) if key.startswith('[')
                       else ('DEFAULT', key))
        groups.setdefault(group, []).append('%s = %s' % (name, value))
    with open(path, 'w') as f:
        for group, lines in groups.items():
            f.write('[%s]\n%s\n\n' % (group, '\n'.join(lines)))
    return path


class ServiceProcess:
    """``python -m <module> --config-file <config>``, logging to ``log_path``."""

    def __init__(self, module, config_path, log_path):
        self.module = module
        self.config_path = config_path
        self.log_path = log_path
        self.proc = None

    def start(self):
        with open(self.log_path, 'ab') as log:
            self.proc = subprocess.Popen(
                [sys.executable, '-m', self.module, '--config-file', self.config_path,
                 '--log-file', self.log_path, '--debug'],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines=40):
        """The end of the log, for failure messages."""
        try:
            with open(self.log_path, errors='replace') as f:
                return ''.join(f.readlines()[-lines:])
        except OSError:
            return ''

    def terminate(self):
        """SIGTERM the process group (returns at once)."""
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)

    def wait(self, timeout=20):
        """Wait for the process to end; SIGKILL it after ``timeout`` seconds."""
        if self.proc is None:
            return
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout=20):
        self.terminate()
        self.wait(timeout)


class Workdir:
    """A directory for a test-bed service's config and logs: the given one, or a
    temporary one removed by :meth:`stop`.  Subclasses start and stop their
    processes; this is also a context manager around :meth:`start` and :meth:`stop`.
    """

    def __init__(self, workdir, prefix):
        self._tmp = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix=prefix)
            workdir = self._tmp.name
        self.workdir = workdir

    def start(self):
        raise NotImplementedError

    def stop(self):
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()
