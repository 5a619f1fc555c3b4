"""``python -m training --output models/default`` trains the default model (``--help`` lists the options)."""

import sys

from .cli import main

sys.exit(main())
