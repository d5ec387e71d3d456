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

"""The agent's configuration options, one module per option group.

Each module has ``register_opts(conf)`` and ``list_opts()``; :func:`register_all`
registers every group on a ``ConfigOpts`` (the agent uses the global ``cfg.CONF``:
oslo.messaging registers some of its groups there only).  ``vmi_agent.conf.opts`` is
what ``oslo-config-generator`` reads.
"""

from vmi_agent.conf import agent
from vmi_agent.conf import dump
from vmi_agent.conf import qemu
from vmi_agent.conf import xen

_MODULES = (agent, qemu, dump, xen)


def register_all(conf):
    for module in _MODULES:
        module.register_opts(conf)


def list_opts():
    """``[(group, [opts])]`` of every group, for oslo-config-generator."""
    out = []
    for module in _MODULES:
        out.extend(module.list_opts())
    return out
