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

"""nova-api's validators for the ``vmi:*`` flavor extra specs.

Registered under the ``nova.api.extra_spec_validators`` entry point, they make nova-api
(microversion 2.86 and later) refuse a malformed ``vmi:*`` extra spec with a 400 when
it is set on a flavor, instead of VMIFilter meeting it at boot.  Registering the ``vmi``
namespace also makes nova-api refuse unknown keys in it (``vmi:enable``).  This module
runs inside nova-api: it imports Nova and the standard library only.
"""

from nova.api.validation.extra_specs import base

from nova_vmi import scheduler as vocab

EXTRA_SPEC_VALIDATORS = [
    base.ExtraSpecValidator(
        name=vocab.SPEC_ENABLED,
        description=(
            'Whether instances of this flavor are introspected by nova-vmi.  When '
            'true, VMIFilter places them only on hosts in an aggregate with '
            'vmi_enabled=true.'
        ),
        value={
            'type': bool,
            'description': 'Whether to introspect instances of this flavor.',
        },
    ),
    base.ExtraSpecValidator(
        name=vocab.SPEC_TRIGGER,
        description=(
            'A guest trigger kind instances of this flavor need (implies '
            'vmi:enabled=true): "guest" for any kind, or one kind an agent offers '
            '("debugcon" on QEMU, "vmfunc" or "rdtsc" on Xen).  VMIFilter places them '
            "only on hosts whose aggregates' vmi_triggers offer it."
        ),
        value={
            'type': str,
            'description': 'The guest trigger kind.',
            'enum': list(vocab.TRIGGER_VALUES),
        },
    ),
]


def register():
    """The validators, as Nova's ``nova.api.extra_spec_validators`` loader takes them."""
    return EXTRA_SPEC_VALIDATORS
