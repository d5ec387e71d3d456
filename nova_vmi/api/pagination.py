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

"""``?limit=&marker=`` on lists, and the ``links`` that point at the next page."""

import urllib.parse

import flask

from nova_vmi.api import errors


def check_query(known):
    """400 for a query parameter this list does not know (a typo would be ignored)."""
    unknown = sorted(set(flask.request.args) - set(known))
    if unknown:
        raise errors.BadRequest('unknown query parameter(s): %s; known: %s'
                                % (', '.join(unknown), ', '.join(known)))


def page_params(max_limit, marker_type=str):
    """``(limit, marker)`` of the request; ``limit`` at most ``max_limit``."""
    args = flask.request.args
    limit = max_limit
    if 'limit' in args:
        try:
            limit = int(args['limit'])
        except ValueError:
            raise errors.BadRequest('limit must be an integer, not %r' % args['limit'])
        if limit < 1:
            raise errors.BadRequest('limit must be at least 1, not %d' % limit)
        limit = min(limit, max_limit)
    marker = args.get('marker')
    if marker is not None:
        try:
            marker = marker_type(marker)
        except ValueError:
            raise errors.BadRequest('marker %r is not a valid marker here' % marker)
    return limit, marker


def page(items, limit, key='id'):
    """``(page, links)`` from ``items`` fetched with ``limit + 1``."""
    links = []
    if len(items) > limit:
        items = items[:limit]
        query = [(k, v) for k, v in flask.request.args.items(multi=True)
                 if k not in ('limit', 'marker')]
        query += [('limit', limit), ('marker', items[-1][key])]
        url = flask.request.base_url + '?' + urllib.parse.urlencode(query)
        links.append({'rel': 'next', 'href': url})
    return items, links
