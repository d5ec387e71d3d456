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

"""Instance policies the agent was given, kept on disk across restarts.

The control plane owns policies and casts them down; the agent keeps its copy in
``<state_dir>/policies.json`` so that periodic and guest triggers work again after a
restart before anyone re-sends them.
"""

import json
import logging
import os
import threading

from nova_vmi.objects import policy as policy_obj
from vmi_agent.engine import storage

LOG = logging.getLogger(__name__)


class PolicyStore:
    """``{instance_uuid: VMIPolicy}``, saved on every change."""

    def __init__(self, path, default):
        self._path = path
        self._default = default
        self._lock = threading.Lock()
        self._policies = self._load()

    def _load(self):
        try:
            with open(self._path) as f:
                raw = json.load(f)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            LOG.warning('ignoring unreadable policy file %s: %s', self._path, exc)
            return {}
        policies = {}
        for uuid, primitive in raw.items() if isinstance(raw, dict) else ():
            try:
                policies[uuid] = policy_obj.VMIPolicy.from_primitive(primitive)
            except ValueError as exc:
                LOG.warning('ignoring the stored policy of %s: %s', uuid, exc)
        return policies

    def get(self, instance_uuid):
        """The instance's policy, or the default one."""
        with self._lock:
            return self._policies.get(instance_uuid) or self._default()

    def set(self, instance_uuid, policy):
        """Store ``policy`` (None: back to the default) and save the file."""
        with self._lock:
            if policy is None:
                self._policies.pop(instance_uuid, None)
            else:
                self._policies[instance_uuid] = policy
            data = json.dumps({u: p.to_primitive() for u, p in self._policies.items()},
                              indent=1, sort_keys=True)
            os.makedirs(os.path.dirname(self._path), exist_ok=True)
            storage.write_file_atomic(self._path, data.encode())
