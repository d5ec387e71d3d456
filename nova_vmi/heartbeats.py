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

"""When an agent counts as alive: the rule the API and nova-vmi-manage share."""

import datetime


def is_alive(agent, now, intervals):
    """True while ``agent``'s last heartbeat is younger than ``intervals`` of its intervals.

    ``agent`` is a row of ``nova_vmi.db.api.agent_list``; ``now`` an aware UTC datetime.
    """
    last = agent.get('last_heartbeat')
    if last is None:
        return False
    if last.tzinfo is None:
        last = last.replace(tzinfo=datetime.timezone.utc)
    period = datetime.timedelta(seconds=intervals * max(agent.get('interval') or 0, 1))
    return now - last <= period
