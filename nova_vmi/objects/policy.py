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

"""An instance's introspection policy: what the agent on its host runs, and when."""

from nova_vmi.objects import base
from nova_vmi.objects import fields


@base.VMIObjectRegistry.register
class VMIPolicy(base.VMIObject):
    """Which probes run, which triggers start them, and how memory is read.

    ``guest_trigger_rate`` caps guest-initiated runs (runs per second, averaged over a
    second's burst): a guest that triggers in a tight loop gets that many runs, no more.
    """

    # Version 1.0: initial version
    VERSION = '1.0'

    fields = {
        'probes': fields.ListOfStringsField(),
        'on_demand': fields.BooleanField(default=True),
        'periodic_seconds': fields.IntegerField(nullable=True, default=None),
        'guest': fields.BooleanField(default=False),
        'consistency': fields.ConsistencyField(default='live'),
        'guest_trigger_rate': fields.FloatField(default=1.0),
    }

    @classmethod
    def default(cls, probes):
        """The policy of an instance nobody set one for: on-demand runs only."""
        policy = cls(probes=list(probes))
        policy.obj_set_defaults()
        return policy

    def validate(self):
        """Raise ValueError for values the agent cannot honour."""
        unset = sorted(name for name in self.fields if not self.obj_attr_is_set(name))
        if unset:
            # Reading an unset field raises NotImplementedError (oslo applies defaults
            # only in obj_set_defaults()): refuse such a policy with a clear ValueError.
            raise ValueError('a policy needs every field set (default() sets them); '
                             'unset: %s' % ', '.join(unset))
        if not self.probes:
            raise ValueError('a policy needs at least one probe')
        if self.periodic_seconds is not None and self.periodic_seconds < 1:
            raise ValueError('periodic_seconds must be at least 1, not %d'
                             % self.periodic_seconds)
        if not 0 < self.guest_trigger_rate <= 1000:
            raise ValueError('guest_trigger_rate must be in (0, 1000] runs per second, '
                             'not %s' % self.guest_trigger_rate)
