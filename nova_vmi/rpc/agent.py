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

"""Client side of the agent RPC API, and its version history.

Version history:

* 1.0 - ``introspect(run)``, ``set_policy(instance_uuid, policy)``, ``list_guests()``,
  ``ping()``.

The agent's endpoint (``vmi_agent.manager.AgentManager``) implements the same methods with
the same arguments; a new method or argument bumps the minor version here and there, and
the client pins ``version_cap`` during a rolling upgrade.
"""

import oslo_messaging as messaging

from nova_vmi.objects import base as objects_base

TOPIC = 'vmi-agent'
RPC_API_VERSION = '1.0'


def get_transport(conf, url=None):
    """The RPC transport for ``conf`` (``[DEFAULT] transport_url`` unless ``url``)."""
    _register_client_opts(conf)
    return messaging.get_rpc_transport(conf, url=url)


def _register_client_opts(conf):
    """Give ``conf`` the option groups oslo.messaging registers on cfg.CONF only.

    oslo.messaging 18 registers ``[oslo_messaging_tracing]`` and
    ``[oslo_messaging_metrics]`` at import on the global cfg.CONF, yet its RPC client
    reads them from the ConfigOpts it is given: with a private one (the nova-api
    filter's, a test's) every cast fails with NoSuchOptError.
    """
    try:
        from oslo_messaging._metrics import client as metrics
        from oslo_messaging._tracing import client as tracing
    except ImportError:     # a release without them
        return
    groups = (('oslo_messaging_tracing', getattr(tracing, 'oslo_messaging_tracing', [])),
              ('oslo_messaging_metrics', getattr(metrics, 'oslo_messaging_metrics', [])))
    for group, opts in groups:
        conf.register_opts(opts, group=group)


class AgentAPI:
    """Talks to the ``vmi-agent`` on a given host.

    Casts (``introspect``, ``set_policy``) return at once: the outcome arrives as
    notifications.  Calls (``list_guests``, ``ping``) wait up to ``timeout`` seconds and
    raise ``oslo_messaging.MessagingTimeout`` when the agent does not answer.
    """

    def __init__(self, transport, timeout=30, version_cap=None):
        target = messaging.Target(topic=TOPIC, version=RPC_API_VERSION)
        self._client = messaging.get_rpc_client(
            transport, target, serializer=objects_base.VMIObjectSerializer(),
            timeout=timeout, version_cap=version_cap)

    def _prepare(self, host, version='1.0'):
        return self._client.prepare(server=host, version=version)

    def introspect(self, ctxt, host, run):
        """Start ``run`` (a ``VMIRunRequest``) on the agent of ``host``."""
        self._prepare(host).cast(ctxt, 'introspect', run=run)

    def set_policy(self, ctxt, host, instance_uuid, policy):
        """Give an instance a ``VMIPolicy``; ``None`` returns it to the default."""
        self._prepare(host).cast(ctxt, 'set_policy', instance_uuid=instance_uuid,
                                 policy=policy)

    def list_guests(self, ctxt, host):
        """The guests the agent on ``host`` sees: a list of ``VMIGuestPayload``."""
        return self._prepare(host).call(ctxt, 'list_guests')

    def ping(self, ctxt, host):
        """``{'host', 'driver', 'version'}`` of the agent on ``host``."""
        return self._prepare(host).call(ctxt, 'ping')
