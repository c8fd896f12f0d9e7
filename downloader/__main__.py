"""``python -m downloader``: the same as the ``downloader`` command."""

import sys

from downloader.cli import main

sys.exit(main())
