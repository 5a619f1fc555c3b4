"""``python -m training --output models/teacher`` trains a model of the default architecture, one or an ensemble of
members (``--help`` lists the options); the default model is distilled from the committed teacher
(``python -m training.distill``)."""

import sys

from .cli import main

sys.exit(main())
