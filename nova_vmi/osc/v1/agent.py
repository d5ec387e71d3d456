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

"""``openstack introspection agent list``: the agents that sent heartbeats (admin)."""

from osc_lib.command import command

from nova_vmi.osc.v1 import common

COLUMNS = ('host', 'driver', 'alive', 'last_heartbeat', 'interval', 'version',
           'capabilities')


class ListAgents(command.Lister):
    """List the introspection agents and whether each is alive."""

    def take_action(self, parsed_args):
        agents = common.call(common.api(self.app).list_agents)
        return COLUMNS, [common.row(agent, COLUMNS) for agent in agents]
