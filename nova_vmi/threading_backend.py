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

"""Importing this selects oslo.service's threading backend: import it first.

oslo.messaging imports oslo.service, which picks its eventlet backend at that moment
unless one was chosen before.  nova-vmi runs on threads (OpenStack is removing
eventlet), so every entry point imports this module before anything else, as Nova's
commands import ``nova.monkey_patch``.  The scheduler filter, which runs inside
nova-scheduler, must not.
"""

import warnings

from oslo_service import backend

# Libraries probe for eventlet at import (futurist does), and importing it prints a
# deprecation banner on every command: it says nothing about nova-vmi, which never
# uses eventlet.
warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')

backend.init_backend(backend.BackendType.THREADING)
