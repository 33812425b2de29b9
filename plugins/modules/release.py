#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: (c) 2025, weblab.stack maintainers (@weblab)
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: release
short_description: Create, switch, roll back and clean releases under a deploy path
version_added: 0.1.0
description:
  - Manages the Capistrano layout under O(path) - C(releases/NAME/), C(shared/), C(repo/) and the
    C(current) link to the live release. C(venvs/) belongs to the C(weblab.stack.app) role
    and is never touched.
  - What is live is read from the C(current) link, never guessed from file times.
  - C(current) is switched by creating a new link and renaming it over C(current), so there is
    never a moment without C(current).
  - The state of each release (C(unfinished), C(good), C(failed), C(abandoned)), its source
    revision, when it was created and when it went live are kept in the manifest
    C(PATH/releases.json), written atomically. Nothing is written inside a release directory
    except the links to shared paths. A directory under C(releases/) that the manifest does not
    know is reported with state C(unknown) and left alone.
  - Every operation holds an exclusive lock on C(PATH/.weblab-release.lock) (C(flock)), so a
    second deploy waits up to O(lock_timeout) seconds and then fails naming the holder. The lock
    covers one task; serialise whole deploys (for example with C(serial) or C(throttle)) when
    several controllers may deploy to the same host.
author:
  - weblab.stack maintainers (@weblab)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - Reports the changes a real run would make, in RV(actions), without touching the disk.
      - Switching to a release that does not exist yet is reported as a change, with a warning,
        because in a real run an earlier task would have created it.
  diff_mode:
    support: full
    details: Shows where C(current) pointed and the state of each release before and after.
  platform:
    platforms: posix
options:
  path:
    description:
      - The deploy path, for example C(/srv/weblab).
    type: path
    required: true
  state:
    description:
      - V(present) creates C(releases/NAME) (and the layout) marked C(unfinished). A release
        that exists is left as it is (not changed), except that one marked C(failed) or
        C(abandoned) is marked C(unfinished) again so it can be prepared and switched to anew.
        With O(shared_paths), it also links them into the release, so checks run in it before the
        switch see the shared files; put the code in the release first (a path the code ships
        is replaced by the link).
      - V(switch) links O(shared_paths) into the release, points C(current) at it, clears the
        C(unfinished) mark (the release becomes C(good)) and records it in the manifest with
        its revision, the time and the release that was live before. Switching to the release
        that is already live changes nothing. It refuses a release marked C(failed) or
        C(abandoned).
      - V(fail) marks O(release) C(failed) without touching C(current). It refuses the live
        release (roll back instead).
      - V(rollback) points C(current) at O(release) or, without it, at the previous good
        release (the C(good) release that was live most recently, from the manifest). The
        release that was live is marked C(abandoned), so no later rollback goes back to it. It
        fails when there is no such release.
      - V(clean) keeps the O(keep) C(good) releases that were live most recently and removes
        the others, and every C(unfinished), C(failed) and C(abandoned) release. The live
        release, the release a rollback would go to and O(release) are always kept.
      - V(query) changes nothing and returns the data.
    type: str
    choices: [present, switch, fail, rollback, clean, query]
    default: present
  release:
    description:
      - The release name, a single directory name under C(releases/) (no C(/), not starting with
        C(.)). Derive it from the source commit so that every host of one deploy uses the same
        name and re-running a deploy changes nothing.
      - Required with O(state=present), O(state=switch) and O(state=fail).
      - With O(state=rollback), the release to go back to (it must be C(good)).
      - With O(state=clean), a release that is kept whatever its state, for example the one
        being prepared.
    type: str
  revision:
    description:
      - The source revision (commit) of the release, recorded in the manifest by
        O(state=present) and O(state=switch).
    type: str
  settings:
    description:
      - With O(state=present), a digest of everything the deploy puts into the release besides
        its code (its settings files, what its venv is built from). O(release) is then the base
        the name is chosen from - O(release) itself, or C(RELEASE-2), C(RELEASE-3), ...
        whichever was created with this digest, else the first name not used yet - and
        RV(release) is the name chosen. A release is never given other settings, so a deploy
        of the live release's code with changed settings prepares and checks a new release and
        leaves the live one's files as they are.
      - The digest is recorded in the manifest; a release recorded without one is taken as
        holding other settings.
    type: str
  shared_paths:
    description:
      - Paths relative to C(shared/) that O(state=present), O(state=switch) and O(state=rollback)
        link into the release at the same relative path (relative links). A missing one is created in
        C(shared/) as a directory; whatever the release holds at that path is replaced by the
        link.
      - Absolute paths, paths with C(..) and a path inside another listed path are refused.
    type: list
    elements: str
    default: []
  keep:
    description:
      - With O(state=clean), how many C(good) releases to keep, the live one included. At least
        1.
    type: int
    default: 5
  lock_timeout:
    description:
      - Seconds to wait for the deploy lock held by another run before failing. V(0) fails at
        once.
    type: int
    default: 60
notes:
  - The module does not run any program; it only creates directories, links and the manifest.
  - O(state=clean) removes unfinished releases, so run it after the switch or pass the release
    being prepared as O(release).
  - Without O(release), O(state=rollback) goes back one release each time it runs, so it is
    never idempotent; with O(release) it is.
seealso:
  - name: Capistrano structure
    description: The directory layout this module manages.
    link: https://capistranorb.com/documentation/getting-started/structure/
'''

EXAMPLES = r'''
- name: Create the release for this commit
  weblab.stack.release:
    path: /srv/weblab
    release: "{{ __app_commit[:12] }}"
    revision: "{{ __app_commit }}"
    state: present

- name: Make the release live
  weblab.stack.release:
    path: /srv/weblab
    release: "{{ __app_commit[:12] }}"
    revision: "{{ __app_commit }}"
    shared_paths:
      - media
      - logs
      - .env
    state: switch

- name: Mark the release failed when its migration failed (current stays where it was)
  weblab.stack.release:
    path: /srv/weblab
    release: "{{ __app_commit[:12] }}"
    state: fail

- name: Roll back to the previous good release
  weblab.stack.release:
    path: /srv/weblab
    state: rollback

- name: Roll back to a named release (idempotent)
  weblab.stack.release:
    path: /srv/weblab
    release: 3f2a9c1d0b7e
    state: rollback

- name: Keep the three most recent good releases
  weblab.stack.release:
    path: /srv/weblab
    keep: 3
    state: clean

- name: Find out what is live
  weblab.stack.release:
    path: /srv/weblab
    state: query
  register: __app_releases
'''

RETURN = r'''
path:
  description: The deploy path, absolute.
  returned: always
  type: str
  sample: /srv/weblab
current_path:
  description: The path of the C(current) link.
  returned: always
  type: str
  sample: /srv/weblab/current
current_target:
  description: What C(current) points at after the task (the link text), or null when absent.
  returned: always
  type: str
  sample: releases/3f2a9c1d0b7e
releases_path:
  description: The directory holding the releases.
  returned: always
  type: str
  sample: /srv/weblab/releases
shared_path:
  description: The directory holding the shared paths.
  returned: always
  type: str
  sample: /srv/weblab/shared
manifest_path:
  description: The manifest recording the state of each release.
  returned: always
  type: str
  sample: /srv/weblab/releases.json
release:
  description:
    - The release the task acted on (for O(state=rollback), the release it went to; for
      O(state=present) with O(settings), the name chosen), or null.
  returned: always
  type: str
  sample: 3f2a9c1d0b7e
release_path:
  description: The directory of RV(release), or null.
  returned: always
  type: str
  sample: /srv/weblab/releases/3f2a9c1d0b7e
live:
  description: The release C(current) points at after the task, or null when nothing is live.
  returned: always
  type: str
  sample: 3f2a9c1d0b7e
previous:
  description: The release a rollback would go to after the task, or null when there is none.
  returned: always
  type: str
  sample: 9b0e4d7c2a11
switched_from:
  description: The release that was live before this task moved C(current), or null when it
    did not move or nothing was live.
  returned: always
  type: str
  sample: 9b0e4d7c2a11
removed:
  description: The releases O(state=clean) removed (or would remove in check mode).
  returned: always
  type: list
  elements: str
  sample: [1c5e7a0f3d22]
linked:
  description: The shared paths linked into the release by this task.
  returned: always
  type: list
  elements: str
  sample: [media]
actions:
  description: One line per change made (or, in check mode, that a real run would make).
  returned: always
  type: list
  elements: str
  sample: ["point current at releases/3f2a9c1d0b7e (was releases/9b0e4d7c2a11)"]
releases:
  description: Every release known from the manifest or found under C(releases/), oldest first.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The release name.
      type: str
      returned: always
    state:
      description: C(unfinished), C(good), C(failed), C(abandoned), or C(unknown) for a
        directory the manifest does not know.
      type: str
      returned: always
    live:
      description: Whether C(current) points at it.
      type: bool
      returned: always
    exists:
      description: Whether its directory exists.
      type: bool
      returned: always
    path:
      description: Its directory.
      type: str
      returned: always
    revision:
      description: The recorded source revision, or null.
      type: str
      returned: always
    created:
      description: When it was recorded (UTC, ISO 8601), or null.
      type: str
      returned: always
    switched:
      description: When it last went live (UTC, ISO 8601), or null.
      type: str
      returned: always
    previous:
      description: The release that was live before it last went live, or null.
      type: str
      returned: always
    failed:
      description: When it was marked failed, or null.
      type: str
      returned: always
    abandoned:
      description: When a rollback abandoned it, or null.
      type: str
      returned: always
    settings:
      description: The settings digest it was created with (O(settings)), or null.
      type: str
      returned: always
  sample:
    - name: 9b0e4d7c2a11
      state: good
      live: false
      exists: true
      path: /srv/weblab/releases/9b0e4d7c2a11
      revision: 9b0e4d7c2a11f00d
      created: "2025-01-01T10:00:00Z"
      switched: "2025-01-01T10:01:00Z"
      previous: null
      failed: null
      abandoned: null
      settings: null
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.weblab.stack.plugins.module_utils.release import ReleaseError, run


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type='path', required=True),
            state=dict(type='str', default='present',
                       choices=['present', 'switch', 'fail', 'rollback', 'clean', 'query']),
            release=dict(type='str'),
            revision=dict(type='str'),
            shared_paths=dict(type='list', elements='str', default=[]),
            keep=dict(type='int', default=5),
            lock_timeout=dict(type='int', default=60),
            settings=dict(type='str'),
        ),
        required_if=[
            ('state', 'present', ['release']),
            ('state', 'switch', ['release']),
            ('state', 'fail', ['release']),
        ],
        supports_check_mode=True,
    )
    params = module.params
    try:
        result = run(
            params['path'], params['state'],
            release=params['release'],
            revision=params['revision'],
            shared_paths=params['shared_paths'],
            keep=params['keep'],
            lock_timeout=params['lock_timeout'],
            check_mode=module.check_mode,
            settings=params['settings'],
        )
    except ReleaseError as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg='%s: %s' % (exc.__class__.__name__, exc))
    diff = result.pop('diff')
    for warning in result.pop('warnings'):
        module.warn(warning)
    if module._diff:
        result['diff'] = dict(diff, before_header='%s (before)' % result['path'],
                              after_header='%s (after)' % result['path'])
    module.exit_json(**result)


if __name__ == '__main__':
    main()
