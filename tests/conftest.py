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

"""Test-wide setup that must happen before any test module imports oslo.messaging."""

# The agent and the control plane run on threads: select oslo.service's threading
# backend before oslo.messaging's import would select eventlet (see the module).
from nova_vmi import threading_backend  # noqa: F401
