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

"""``nova-vmi-api``: the REST API through which admins and tenants introspect instances.

Built on Flask, as Keystone is: a maintained framework whose static routing table,
blueprints and error handlers cover what this small API needs, with no home-grown
dispatcher to keep.  The paste pipeline around it (request id, keystonemiddleware
``auth_token``, the context) is plain WSGI, so the same handlers also serve inside
nova-api's pipeline (:mod:`nova_vmi.api.nova_filter`).
"""
