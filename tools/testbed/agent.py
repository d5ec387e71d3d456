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

"""A ``vmi-agent`` process for tests, benchmarks and the demo.

Writes a config file for the given guests and message bus, starts the agent as its own
process (as an operator would run it), and stops it.  The agent runs on the real
oslo.messaging transport it is given: RabbitMQ in functional tests.
"""

import os
import secrets

from tools.testbed import services
from vmi_agent.engine.linux.profile import default_store_path

RABBIT_URL = os.environ.get('NOVA_VMI_RABBIT_URL', 'rabbit://guest:guest@127.0.0.1:5672/')


class AgentProcess(services.Workdir):
    """``vmi-agent`` with the qemu driver over a descriptor directory of test-bed guests.

    ``host`` and ``topic`` default to fresh names, so that several agents (and test
    runs) share one broker without hearing each other.  Extra ``options`` are
    ``{'[group] name': value}`` or ``{'name': value}`` for ``[DEFAULT]``.
    """

    def __init__(self, transport_url=RABBIT_URL, host=None, topic=None, options=None,
                 workdir=None):
        self.transport_url = transport_url
        self.host = host or 'vmi-test-%s' % secrets.token_hex(4)
        self.topic = topic or 'vmi_notifications_%s' % secrets.token_hex(4)
        super().__init__(workdir, 'vmi-agent-')
        self.guest_dir = os.path.join(self.workdir, 'guests')
        self.state_dir = os.path.join(self.workdir, 'state')
        self.log_path = os.path.join(self.workdir, 'agent.log')
        self.config_path = os.path.join(self.workdir, 'vmi-agent.conf')
        os.makedirs(self.guest_dir, exist_ok=True)
        self.options = {
            'host': self.host,
            'transport_url': transport_url,
            '[agent] driver': 'qemu',
            '[agent] state_dir': self.state_dir,
            # Shared with the engine's tests: a kernel is profiled once per build.
            '[agent] profile_dir': default_store_path(),
            '[agent] heartbeat_interval': 2,
            '[agent] guest_refresh_interval': 1,
            '[qemu] guest_dir': self.guest_dir,
            '[notifications] topic': self.topic,
        }
        self.options.update(options or {})
        self.service = None

    def add_guest(self, guest):
        """Make a test-bed ``Guest`` visible to the agent (its next refresh sees it)."""
        return guest.write_descriptor(self.guest_dir)

    def start(self):
        services.write_config(self.config_path, self.options)
        self.service = services.ServiceProcess('vmi_agent.cmd.agent', self.config_path,
                                               self.log_path).start()
        return self

    @property
    def proc(self):
        return self.service.proc if self.service else None

    def alive(self):
        return self.service is not None and self.service.alive()

    def log_tail(self, lines=40):
        """The end of the agent's log, for failure messages."""
        return self.service.log_tail(lines) if self.service else ''

    def stop(self, timeout=20):
        """SIGTERM the agent (the launcher stops its worker), SIGKILL if it lingers."""
        if self.service is not None:
            self.service.stop(timeout)
        super().stop()
