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

"""Tests that run inside Nova's own functional harness (``tox -e nova``, stestr).

They need nova (34.0.0) and openstack-placement installed; pytest cannot run Nova's test
base, so these are testtools tests run by stestr (``stestr run``: see .stestr.conf).
"""

# As Nova's own nova/tests/functional/__init__.py does, and before anything imports
# futurist or oslo.service: Nova picks its concurrency mode here (eventlet patching, or
# native threads with OS_NOVA_DISABLE_EVENTLET_PATCHING=true, which ``tox -e nova`` sets).
from nova import monkey_patch

monkey_patch.patch()
