"""``python -m streamvis``: the server, as ``streamvis_server`` runs it."""

import sys

from ._cli import main

sys.exit(main())
