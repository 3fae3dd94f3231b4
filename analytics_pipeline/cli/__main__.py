"""`python -m analytics_pipeline.cli`: the same as the `analytics-pipeline` script."""

import sys

from analytics_pipeline.cli import main

sys.exit(main())
