# SPDX-License-Identifier: MIT
"""``python3 -m daytime_sd``."""

import sys

from daytime_sd.cli import main

sys.exit(main())
