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

"""The version document: ``/`` lists the API versions, ``/v1`` describes the one there is.

Neither needs a token, so that clients can discover the API before authenticating.
"""

import flask

bp = flask.Blueprint('versions', __name__)

V1 = {'id': 'v1', 'status': 'CURRENT', 'updated': '2026-11-27T00:00:00Z',
      'media-types': [{'base': 'application/json',
                       'type': 'application/vnd.openstack.introspection-v1+json'}]}


def _v1():
    doc = dict(V1)
    doc['links'] = [{'rel': 'self', 'href': flask.request.url_root + 'v1/'}]
    return doc


@bp.get('/')
def index():
    return {'versions': [_v1()]}


@bp.get('/v1')
def show():
    return {'version': _v1()}
