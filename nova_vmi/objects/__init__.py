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

"""The versioned objects both sides exchange: RPC arguments and notification payloads.

They serialise in Nova's form (``nova_object.name`` / ``.namespace`` / ``.version`` /
``.data``), so that tools which read Nova's versioned notifications read ours.  Import
this package to register every class.
"""

from nova_vmi.objects import notification  # noqa: F401
from nova_vmi.objects import policy  # noqa: F401
from nova_vmi.objects import run  # noqa: F401
