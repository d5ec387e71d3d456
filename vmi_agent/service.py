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

"""The ``vmi-agent`` service: RPC server, timers and the manager, on threads."""

import logging

import oslo_messaging as messaging
from oslo_service import service
import stevedore

from nova_vmi.objects import base as objects_base
from nova_vmi import rpc
from vmi_agent.drivers.base import DriverError
from vmi_agent.manager import AgentManager
from vmi_agent.notifier import AgentNotifier

LOG = logging.getLogger(__name__)

DRIVER_NAMESPACE = 'vmi_agent.drivers'


def load_driver(conf):
    """The hypervisor driver ``[agent] driver`` names, or DriverError saying why not."""
    name = conf.agent.driver
    try:
        return stevedore.DriverManager(DRIVER_NAMESPACE, name, invoke_on_load=True,
                                       invoke_args=(conf,),
                                       warn_on_missing_entrypoint=False).driver
    except stevedore.exception.NoMatches:
        names = sorted(stevedore.ExtensionManager(DRIVER_NAMESPACE).names())
        raise DriverError('[agent] driver = %s: no such driver (available: %s)'
                          % (name, ', '.join(names))) from None


class AgentService(service.Service):
    """Serves ``topic=vmi-agent, server=<host>`` and runs the agent's timers.

    Everything is built in :meth:`start`, in the process that serves (the launcher may
    fork), and released in :meth:`stop`.
    """

    def __init__(self, conf):
        super().__init__()
        self.conf = conf
        self.manager = None
        self._server = None
        self._transports = []

    def start(self):
        super().start()
        conf = self.conf
        transport = rpc.get_transport(conf)
        notifications = messaging.get_notification_transport(conf)
        self._transports = [transport, notifications]
        driver = load_driver(conf)
        notifier = AgentNotifier(notifications, conf.host, conf.notifications.topic)
        self.manager = AgentManager(conf, driver, notifier)
        self.manager.start()
        target = messaging.Target(topic=rpc.TOPIC, server=conf.host)
        self._server = messaging.get_rpc_server(
            transport, target, [self.manager],
            serializer=objects_base.VMIObjectSerializer())
        self._server.start()
        self.tg.add_timer_args(conf.agent.guest_refresh_interval,
                               self.manager.refresh_guests,
                               initial_delay=conf.agent.guest_refresh_interval,
                               stop_on_exception=False)
        self.tg.add_timer_args(conf.agent.heartbeat_interval, self.manager.heartbeat,
                               initial_delay=0, stop_on_exception=False)
        LOG.info('vmi-agent on %s serving with the %s driver', conf.host, driver.name)

    def stop(self, graceful=False):
        if self._server is not None:
            self._server.stop()
            self._server.wait()
        super().stop(graceful)
        if self.manager is not None:
            self.manager.stop()
            self.manager.notifier.stop()
            self.manager.driver.close()
        for transport in self._transports:
            transport.cleanup()
