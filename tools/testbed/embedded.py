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

"""The whole service in one process, on embedded defaults: the all-in-one.

``nova-vmi-api``, ``nova-vmi-listener`` and ``vmi-agent`` share this process and one
oslo.messaging transport: ``kombu+memory:////`` (in-process) unless a RabbitMQ URL is
given; the database is a SQLite file; the API runs without Keystone (``noauth``).  It is
what a newcomer runs first, and what the README's first command starts.
"""

import os
import threading

from oslo_config import cfg
from oslo_log import log as logging
from oslo_messaging import opts as messaging_opts
from werkzeug import serving

from nova_vmi.api import pipeline
from nova_vmi import conf as vmi_conf
from nova_vmi.db import migration
from nova_vmi import listener
from tools.testbed import services
from vmi_agent import conf as agent_conf
from vmi_agent.engine.linux.profile import default_store_path
from vmi_agent.service import AgentService

MEMORY_URL = 'kombu+memory:////'


class EmbeddedCloud(services.Workdir):
    """API, listener and agent (qemu driver over ``guest_dir``) in this process.

    Uses the global ``cfg.CONF`` (oslo.messaging needs it), so one per process.
    """

    def __init__(self, transport_url=MEMORY_URL, workdir=None, host='all-in-one'):
        super().__init__(workdir, 'nova-vmi-all-in-one-')
        self.transport_url = transport_url
        self.host = host
        self.port = services.free_port()
        self.url = 'http://127.0.0.1:%d' % self.port
        self.guest_dir = os.path.join(self.workdir, 'guests')
        self.log_path = os.path.join(self.workdir, 'all-in-one.log')
        self._services = []
        self._server = None

    def _configure(self):
        conf = cfg.CONF
        logging.register_options(conf)
        agent_conf.register_all(conf)
        vmi_conf.register_all(conf)
        for group, opts in messaging_opts.list_opts():
            conf.register_opts(opts, group=group)
        conf([], project='nova-vmi', default_config_files=[])
        state = os.path.join(self.workdir, 'state')
        for group, name, value in (
                (None, 'transport_url', self.transport_url),
                (None, 'host', self.host),
                (None, 'log_file', self.log_path),
                ('database', 'connection',
                 'sqlite:///%s' % os.path.join(self.workdir, 'nova-vmi.sqlite')),
                ('api', 'auth_strategy', 'noauth'),
                ('api', 'bind_port', self.port),
                ('agent', 'driver', 'qemu'),
                ('agent', 'state_dir', state),
                ('agent', 'profile_dir', default_store_path()),
                ('agent', 'heartbeat_interval', 2),
                ('agent', 'guest_refresh_interval', 1),
                ('qemu', 'guest_dir', self.guest_dir)):
            conf.set_override(name, value, group=group)
        logging.setup(conf, 'nova-vmi-all-in-one')
        return conf

    def start(self):
        os.makedirs(self.guest_dir, exist_ok=True)
        conf = self._configure()
        migration.db_sync(conf)
        for service in (listener.ListenerService(conf), AgentService(conf)):
            service.start()
            self._services.append(service)
        self._server = serving.make_server('127.0.0.1', self.port,
                                           pipeline.load_app(conf), threaded=True)
        threading.Thread(target=self._server.serve_forever, name='nova-vmi-api',
                         daemon=True).start()
        return self

    def add_guest(self, guest):
        """Let the agent see a test-bed ``Guest`` (its next guest refresh finds it)."""
        return guest.write_descriptor(self.guest_dir)

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        while self._services:
            self._services.pop().stop()
        super().stop()
