# The linear strategy, with Mitogen carrying the tasks to the test containers: one Python
# process per container stays up for the whole run, instead of one `docker exec` and one
# interpreter per task (measured here: 40 module calls in 3.8 s instead of 18.7 s). Only the
# suite uses it (.config/molecule/config.yml); users run the roles with Ansible's own strategy.
#
# Mitogen redirects the connections it knows by their short names. Molecule's inventory names
# the docker connection by its FQCN (community.docker.docker), and Molecule's own plays on the
# controller (create, destroy) use `local`, whose asynchronous tasks Mitogen runs differently
# (Molecule then waited forever for a container's removal). So only the docker connection is
# redirected here, whatever its name; every other connection is Ansible's own, and Mitogen's
# action mix-in steps aside for them (ansible_mitogen.mixins.ActionModuleMixin.__init__).
from __future__ import annotations

import ansible_mitogen.loaders
import ansible_mitogen.strategy

DOCKER = frozenset(("docker", "community.docker.docker"))


def _connection_loader(name, *args, **kwargs):
    if name in DOCKER:
        name = "mitogen_docker"
    return ansible_mitogen.loaders.connection_loader__get_with_context(name, *args, **kwargs)


# Read by AnsibleWrappers._install_wrappers when the strategy starts a play.
ansible_mitogen.strategy.wrap_connection_loader__get_with_context = _connection_loader

Base = ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)


class StrategyModule(ansible_mitogen.strategy.StrategyMixin, Base):
    pass
