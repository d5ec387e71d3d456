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

"""JSON schemas (Draft 7) of the request bodies, and the validators built from them.

The probe names are an enum of ``[api] probes``, so an unknown probe gets a message that
lists the known ones.
"""

import jsonschema

from nova_vmi.objects import fields

MAX_PROBES = 64
MAX_PERIOD = 7 * 24 * 3600


def probes(names):
    return {'type': 'array', 'minItems': 1, 'maxItems': MAX_PROBES, 'uniqueItems': True,
            'items': {'type': 'string', 'enum': list(names)}}


CONSISTENCY = {'type': 'string', 'enum': list(fields.CONSISTENCY_MODES)}


def policy(names):
    """PUT /v1/instances/{uuid}/policy."""
    return {
        'type': 'object',
        'properties': {
            'probes': probes(names),
            'triggers': {
                'type': 'object',
                'properties': {
                    'on_demand': {'type': 'boolean'},
                    'periodic_seconds': {'type': ['integer', 'null'], 'minimum': 1,
                                         'maximum': MAX_PERIOD},
                    'guest': {'type': 'boolean'},
                },
                'additionalProperties': False,
            },
            'consistency': CONSISTENCY,
            'guest_trigger_rate': {'type': 'number', 'exclusiveMinimum': 0,
                                   'maximum': 1000},
        },
        'required': ['probes'],
        'additionalProperties': False,
    }


def run(names):
    """POST /v1/instances/{uuid}/runs."""
    return {
        'type': 'object',
        'properties': {
            'probes': probes(names),
            'consistency': CONSISTENCY,
        },
        'additionalProperties': False,
    }


def validator(schema):
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)
