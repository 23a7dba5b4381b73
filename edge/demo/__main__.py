"""`python -m edge.demo`: the same as the `edge-demo` command."""

import sys

from edge.demo.app import main

sys.exit(main())
