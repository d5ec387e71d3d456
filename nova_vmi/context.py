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

"""The request context of the control plane: who is asking, and their database session.

oslo.context's RequestContext carries the caller (user, project, roles, request id);
oslo.db's transaction_context_provider adds the ``session``/``connection`` attributes
that ``nova_vmi.db.api``'s reader and writer decorators use.
"""

from oslo_context import context
from oslo_db.sqlalchemy import enginefacade


@enginefacade.transaction_context_provider
class RequestContext(context.RequestContext):
    """A caller's request, able to carry a database transaction."""


def get_admin_context():
    """A context for the control plane's own work (listener, nova-vmi-manage)."""
    return RequestContext(is_admin=True, roles=['admin'], overwrite=False)
