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

"""The notification samples under doc/notification_samples, for tests to reuse.

Each sample is a whole notification as oslo.messaging's messagingv2 driver delivers it
(priority, event_type, publisher_id, payload).  The payloads omit
``nova_object.changes`` (which fields were set: noise for a reader, and unordered):
compare with :func:`without_changes`.
"""

import json
import os

SAMPLE_DIR = os.path.normpath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir,
                                           os.pardir, 'doc', 'notification_samples'))


def path(event_type):
    """The sample file of ``event_type``: ``vmi.run.end`` -> ``vmi-run-end.json``."""
    return os.path.join(SAMPLE_DIR, event_type.replace('.', '-') + '.json')


def load(event_type):
    """The sample notification of ``event_type`` as a dict."""
    with open(path(event_type), encoding='utf-8') as sample:
        return json.load(sample)


def without_changes(primitive):
    """``primitive`` with every ``nova_object.changes`` key removed, at any depth."""
    if isinstance(primitive, dict):
        return {key: without_changes(value) for key, value in primitive.items()
                if key != 'nova_object.changes'}
    if isinstance(primitive, list):
        return [without_changes(value) for value in primitive]
    return primitive
