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

"""Nova-side pieces of nova-vmi and the vocabulary they share.

Everything below ``nova_vmi.scheduler`` runs inside Nova (nova-scheduler loads the filter,
nova-api the extra spec validators), so it imports Nova and the standard library only.
The names here are the contract between a request (flavor extra specs, image
properties, scheduler hints), the aggregates that ``nova-vmi-manage aggregate sync``
keeps, and the filter that matches the two.

Trigger kinds: an agent offers guest triggers as capabilities ``trigger:<kind>``
(``debugcon`` on QEMU, ``vmfunc`` and ``rdtsc`` on Xen).  An aggregate's
``vmi_triggers`` lists those kinds plus ``guest`` when there is at least one.  A
request's ``vmi:trigger`` names one kind, or ``guest`` for "any guest trigger".
"""

#: Flavor extra specs (namespace ``vmi``).
SPEC_ENABLED = 'vmi:enabled'
SPEC_TRIGGER = 'vmi:trigger'
#: Image property.
IMAGE_ENABLED = 'vmi_enabled'
#: Scheduler hints (``openstack server create --hint vmi=true``).
HINT_ENABLED = 'vmi'
#: Aggregate metadata.
AGGREGATE_ENABLED = 'vmi_enabled'
AGGREGATE_TRIGGERS = 'vmi_triggers'

#: Any guest trigger will do.
GUEST = 'guest'
#: The guest-trigger kinds agents offer (``trigger:<kind>`` capabilities).
TRIGGER_KINDS = ('debugcon', 'vmfunc', 'rdtsc')
#: What ``vmi:trigger`` may name.
TRIGGER_VALUES = (GUEST,) + TRIGGER_KINDS

_TRUE = ('true', '1', 'yes', 'on', 't', 'y')
_FALSE = ('false', '0', 'no', 'off', 'f', 'n')


def parse_bool(value):
    """True/False for a boolean-like string (as Nova's extra spec validator reads them).

    None for anything else, so callers decide what a malformed value means.
    """
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return None


def split_kinds(value):
    """The trigger kinds of a comma-separated ``vmi_triggers`` value, lower-case."""
    return {kind.strip().lower() for kind in str(value).split(',') if kind.strip()}


def offers_trigger(kinds, wanted):
    """Whether a host offering ``kinds`` satisfies a request for trigger ``wanted``."""
    if wanted == GUEST:
        return GUEST in kinds or bool(kinds & set(TRIGGER_KINDS))
    return wanted in kinds
