"""``python -m th2etl`` is the ``th2etl`` command."""

from __future__ import annotations

import sys

from th2etl.runner import main

sys.exit(main())
