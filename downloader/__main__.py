"""``python -m downloader``: the same as the ``downloader`` command."""

import sys

from downloader.cli import main

if __name__ == "__main__":  # not when a fresh engine process imports it as its parent's main module
    sys.exit(main())
