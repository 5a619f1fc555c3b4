"""``python -m training --output models/default`` trains the default model (see training/train.py for flags)."""

import sys

from .train import main

sys.exit(main())
