"""Offline stand-in for the get-pip.py bootstrap that ansible-test downloads.

ansible-test sanity --venv bootstraps pip in each new virtual environment with a get-pip.py it
fetches from a host these machines cannot reach, unless one is cached as
~/.ansible/test/cache/get_pip_VERSION.py. This stand-in (copied there by scripts/sanity.sh)
installs the standard library's bundled pip with ensurepip, then lets that pip install the
packages ansible-test asked for (the pinned pip among them) from the package index.
"""

import ensurepip
import os
import subprocess
import sys

# Options that only get-pip.py understands.
GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}


def main():
    """Bootstrap pip, then install what the caller asked for."""
    ensurepip.bootstrap(upgrade=True)
    # ensurepip points pip at os.devnull for its config; drop that so the machine's pip
    # settings (certificates, index) apply to the real install.
    os.environ.pop("PIP_CONFIG_FILE", None)
    args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY]
    if args:
        subprocess.run([sys.executable, "-m", "pip", "install"] + args, check=True)


if __name__ == "__main__":
    main()
