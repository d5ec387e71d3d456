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

"""What every trigger source offers the agent.

A source calls ``fire(instance_uuid, trigger, detail)`` when something asks for a run:
``trigger`` is ``periodic`` or ``guest``, ``detail`` a short text for people (which
byte, which VMFUNC leaf).  ``fire`` returns at once and never raises (the agent applies
the instance's policy and rate limit, then queues the run); a source must survive
whatever a guest sends it.  The agent tells sources which guests to watch as they come
and go.
"""


class TriggerSource:
    """Base of the trigger sources.  ``kind`` names the guest-trigger kind it serves."""

    kind = None

    def __init__(self, fire):
        self.fire = fire

    def start(self):
        """Start the source's thread(s)."""

    def stop(self):
        """Stop them and release every socket or process; idempotent."""

    def watch(self, info):
        """Start listening for ``info`` (a ``vmi_agent.drivers.base.GuestInfo``)."""

    def unwatch(self, instance_uuid):
        """Stop listening for that guest (gone, or its policy turned the source off)."""
