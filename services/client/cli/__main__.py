"""`python -m speechmesh.client.cli transcribe ...`: the client commands alone."""

import sys

from speechmesh.client.cli import main

sys.exit(main())
