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

"""Field types of nova-vmi's objects: oslo's, plus enums and a JSON field."""

import datetime
import json

from oslo_utils import timeutils
from oslo_versionedobjects import fields
from oslo_versionedobjects.fields import *  # noqa: F401,F403

TRIGGERS = ('on_demand', 'periodic', 'guest')
CONSISTENCY_MODES = ('live', 'pause', 'snapshot')
SEVERITIES = ('low', 'medium', 'high', 'critical')


class TriggerField(fields.BaseEnumField):
    """What started a run: a request, the policy's timer, or the guest itself."""

    AUTO_TYPE = fields.Enum(valid_values=TRIGGERS)


class ConsistencyField(fields.BaseEnumField):
    """How the agent reads memory that the guest keeps changing.

    ``live``: no pause, torn reads detected and retried; ``pause``: the vCPUs are stopped
    around the probes; ``snapshot``: the guest runs on while the agent reads a frozen view
    (altp2m on Xen).
    """

    AUTO_TYPE = fields.Enum(valid_values=CONSISTENCY_MODES)


class SeverityField(fields.BaseEnumField):
    AUTO_TYPE = fields.Enum(valid_values=SEVERITIES)


class Json(fields.FieldType):
    """Any value JSON can carry (a probe's records, a finding's evidence)."""

    @staticmethod
    def coerce(obj, attr, value):
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise ValueError('%s is not JSON-serialisable: %s' % (attr, exc)) from exc
        return value

    @staticmethod
    def to_primitive(obj, attr, value):
        return value

    @staticmethod
    def from_primitive(obj, attr, value):
        return value


class JsonField(fields.AutoTypedField):
    AUTO_TYPE = Json()


class Timestamp(fields.DateTime):
    """A UTC time kept to the microsecond.

    oslo's DateTime drops the fraction on the wire, and run timings are in milliseconds.
    """

    @staticmethod
    def to_primitive(obj, attr, value):
        return value.astimezone(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%fZ')

    @staticmethod
    def from_primitive(obj, attr, value):
        return timeutils.parse_isotime(value)


class TimestampField(fields.AutoTypedField):
    AUTO_TYPE = Timestamp()
