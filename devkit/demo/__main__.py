"""`python -m devkit.demo`: the same as the `edge-demo` command."""

import sys

from devkit.demo.app import main

sys.exit(main())
