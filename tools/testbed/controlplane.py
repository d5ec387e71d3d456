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

"""The control plane as processes, for tests, benchmarks and the demo.

Writes one configuration file, creates the schema with ``nova-vmi-manage db sync``, and
runs ``nova-vmi-listener`` and ``nova-vmi-api`` (noauth) as their own processes, as an
operator would.  :meth:`ControlPlane.call` talks HTTP to the API.
"""

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

from nova_vmi.objects import notification
from tools.testbed import services

ADMIN = {'X-User-Id': 'admin', 'X-Project-Id': 'admin-project', 'X-Roles': 'admin'}


def api_call(url, method, path, body=None, headers=None):
    """``(status, JSON body or None)`` of one request to the API at ``url``.

    The caller is an admin unless ``headers`` say otherwise (noauth trusts them).
    """
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, method=method)
    for name, value in dict(ADMIN, **(headers or {})).items():
        request.add_header(name, value)
    if data is not None:
        request.add_header('Content-Type', 'application/json')
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    return status, (json.loads(raw) if raw else None)


class ControlPlane(services.Workdir):
    """``nova-vmi-api`` and ``nova-vmi-listener`` on one database and message bus."""

    def __init__(self, database_url, transport_url, topic=notification.DEFAULT_TOPIC,
                 workdir=None, options=None):
        super().__init__(workdir, 'nova-vmi-')
        self.port = services.free_port()
        self.url = 'http://127.0.0.1:%d' % self.port
        self.config_path = os.path.join(self.workdir, 'nova-vmi.conf')
        self.options = {
            'transport_url': transport_url,
            '[database] connection': database_url,
            '[listener] topic': topic,
            '[api] auth_strategy': 'noauth',
            '[api] bind_port': self.port,
        }
        self.options.update(options or {})
        self.services = {}

    def _service(self, name, module):
        return services.ServiceProcess(module, self.config_path,
                                       os.path.join(self.workdir, '%s.log' % name))

    def start(self):
        services.write_config(self.config_path, self.options)
        subprocess.run([sys.executable, '-m', 'nova_vmi.cmd.manage', '--config-file',
                        self.config_path, 'db', 'sync'],
                       check=True, capture_output=True, timeout=120)
        for name, module in (('listener', 'nova_vmi.cmd.listener'),
                             ('api', 'nova_vmi.cmd.api')):
            self.services[name] = self._service(name, module).start()
        deadline = time.monotonic() + 60
        while True:
            try:
                self.call('GET', '/')
                return self
            except OSError:
                if time.monotonic() > deadline or not self.services['api'].alive():
                    raise RuntimeError('nova-vmi-api did not start:\n'
                                       + self.log_tail('api'))
                time.sleep(0.2)

    def log_tail(self, name, lines=40):
        return self.services[name].log_tail(lines) if name in self.services else ''

    def call(self, method, path, body=None, headers=None):
        """``(status, JSON body or None)`` of one API request (admin by default)."""
        return api_call(self.url, method, path, body, headers)

    def stop(self, timeout=20):
        for service in self.services.values():
            service.terminate()
        for service in self.services.values():
            service.wait(timeout)
        super().stop()
